"""Adapters from the core's ports to real infrastructure (PostgreSQL, Redis)."""
