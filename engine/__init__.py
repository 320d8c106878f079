"""Order execution engine: the pure domain core plus its storage adapters.

Nothing in this package (outside ``engine.adapters`` and ``engine.embedded``)
imports Ray, Redis, asyncpg or FastAPI, so the core is tested without any of them.
"""
