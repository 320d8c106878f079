"""The order execution engine's core: models, lifecycle, order types, routing, dispatch, workflow.

Nothing in this package outside ``engine.adapters`` imports Ray, Redis, asyncpg, HTTP or
subprocesses, so the core is tested without any of them.
"""
