"""Domain errors. They carry data; the HTTP edge (api/errors.py) decides what status code they become."""

from __future__ import annotations

from enum import StrEnum


class EngineError(Exception):
    """Base class of every error the engine raises on purpose.

    Subclasses pass their data (not a message) to ``Exception.__init__`` so that
    they pickle, and cross Ray process boundaries, intact; ``__str__`` renders them.
    """

    def __str__(self) -> str:
        return " ".join(str(a) for a in self.args)


class InvalidTransition(EngineError):
    """An order was asked to move along an edge the lifecycle table does not have."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(current, target)
        self.current = current
        self.target = target

    def __str__(self) -> str:
        return f"{self.current.upper()} -> {self.target.upper()}"


class VenueError(EngineError):
    """A venue could not quote or swap. ``transient`` says whether retrying may help."""

    transient: bool = False

    def __init__(self, venue: str, reason: str) -> None:
        super().__init__(venue, reason)
        self.venue = venue
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.venue}: {self.reason}"


class TransientVenueError(VenueError):
    """A fault that may clear on its own: RPC timeout, blockhash expired, node behind."""

    transient = True


class SlippageExceeded(VenueError):
    """The swap would give less than the order's minimum output; nothing was swapped."""


class NoPoolError(VenueError):
    """The venue has no pool for the pair."""


class InsufficientLiquidity(TransientVenueError):
    """The pool cannot fill the amount (liquidity may come back, so this is retried)."""


class NoRouteError(EngineError):
    """No venue produced a usable quote; ``transient`` if some failure may clear on retry."""

    def __init__(self, reason: str, transient: bool) -> None:
        super().__init__(reason, transient)
        self.reason = reason
        self.transient = transient

    def __str__(self) -> str:
        return self.reason


class StoreUnavailable(EngineError):
    """A storage dependency (Redis or PostgreSQL) cannot be reached right now."""

    def __init__(self, store: str, reason: str) -> None:
        super().__init__(store, reason)
        self.store = store
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.store} unavailable: {self.reason}"


class OrderNotFound(EngineError):
    def __init__(self, order_id: str) -> None:
        super().__init__(order_id)
        self.order_id = order_id

    def __str__(self) -> str:
        return f"order {self.order_id} not found"


class DuplicateRequest(EngineError):
    """An Idempotency-Key was used before; carries the order it created and that request's body hash."""

    def __init__(self, order_id: str, request_hash: str | None) -> None:
        super().__init__(order_id, request_hash)
        self.order_id = order_id
        self.request_hash = request_hash

    def __str__(self) -> str:
        return f"idempotency key already used for {self.order_id}"


class Refusal(StrEnum):
    """Why the engine refused a request, in domain terms. The edge maps each to an HTTP status
    (``api/errors.py``); the core never names one."""

    INVALID = "invalid"
    """The request is malformed or breaks a rule of the engine (a field, a pair, a time)."""
    CONFLICT = "conflict"
    """It contradicts an earlier request (an Idempotency-Key reused with another body)."""
    UNAVAILABLE = "unavailable"
    """A dependency cannot be reached: nothing was accepted, the client may retry."""


class StaleRun(EngineError):
    """A run of an order wrote (or meant to sign) after another run claimed the order: its epoch is
    no longer the order's. The run must stop quietly; the newer run owns the order."""

    def __init__(self, order_id: str, epoch: int) -> None:
        super().__init__(order_id, epoch)
        self.order_id = order_id
        self.epoch = epoch

    def __str__(self) -> str:
        return f"run {self.epoch} of {self.order_id} is stale: another run claimed the order"
