"""Domain errors. They carry data; the HTTP edge (serve_app.py) decides what status code they become."""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class InvalidTransition(EngineError):
    """An order was asked to move along an edge the lifecycle table does not have."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"{current.upper()} -> {target.upper()}")
        self.current = current
        self.target = target


class VenueError(EngineError):
    """A venue could not quote or swap. ``transient`` says whether retrying may help."""

    transient: bool = False

    def __init__(self, venue: str, reason: str) -> None:
        super().__init__(f"{venue}: {reason}")
        self.venue = venue
        self.reason = reason


class TransientVenueError(VenueError):
    """A fault that may clear on its own: RPC timeout, blockhash expired, node behind."""

    transient = True


class NoPoolError(VenueError):
    """The venue has no pool for the pair."""


class InsufficientLiquidity(TransientVenueError):
    """The pool cannot fill the amount (liquidity may come back, so this is retried)."""


class NoRouteError(EngineError):
    """No venue produced a usable quote; ``transient`` if some failure may clear on retry."""

    def __init__(self, reason: str, transient: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


class StoreUnavailable(EngineError):
    """A storage dependency (Redis or PostgreSQL) cannot be reached right now."""

    def __init__(self, store: str, reason: str) -> None:
        super().__init__(f"{store} unavailable: {reason}")
        self.store = store
        self.reason = reason


class OrderNotFound(EngineError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id} not found")
        self.order_id = order_id


class DuplicateRequest(EngineError):
    """An Idempotency-Key was used before; carries the order it created and that request's body hash."""

    def __init__(self, order_id: str, request_hash: str | None) -> None:
        super().__init__(f"idempotency key already used for {order_id}")
        self.order_id = order_id
        self.request_hash = request_hash
