"""Accepting an order: parse and validate the body, then store it durably, or refuse it whole.

Pure parsing lives in :func:`parse_order`; :class:`OrderIntake` writes PostgreSQL
(the source of truth) then Redis (active set + queue) and undoes the first write
if the second fails, so a refused order leaves nothing behind. Concurrent requests
are written together (one statement, one pipeline per batch).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from engine.accounts import LOCAL_ACCOUNT
from engine.batching import Coalescer
from engine.errors import DuplicateRequest, Refusal, StoreUnavailable
from engine.ids import new_order_id
from engine.models import Order, OrderEvent, OrderRequest, OrderStatus
from engine.order_types import canonical, names, policy_of, problem_field

log = logging.getLogger("engine.intake")


@dataclass(frozen=True)
class Rejection:
    """Why a request was refused, in domain terms; the edge maps ``kind`` to a status code (api/errors.py)."""

    kind: Refusal
    error: str
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _order_type_problems(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The problem with the body's order type if it is a string no registered type has (others, a
    missing one included, are the model's to report)."""
    raw = data.get("orderType", data.get("order_type"))
    if not isinstance(raw, str) or canonical(raw) is not None or not 0 < len(raw) <= 32:
        return []
    return [{"path": ["orderType"], "message": f"must be one of {', '.join(names())}", "code": "enum"}]


def _validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"path": [p for p in err["loc"] if p != "__root__"], "message": err["msg"], "code": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def parse_order(body: bytes, now_ms: float | None, tradable: Container[tuple[str, str]]) -> OrderRequest | Rejection:
    """Validate a request body into an :class:`OrderRequest`, or say exactly what is wrong.

    ``tradable`` holds the ``(tokenIn, tokenOut)`` pairs some venue trades (asked of the venues);
    an order type that waits for a listing (SNIPER) may name another pair.
    """
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        return Rejection(Refusal.INVALID, "Invalid JSON", f"the body is not valid JSON: {str(exc)[:200]}")
    if not isinstance(data, dict):
        return Rejection(
            Refusal.INVALID,
            "Validation failed",
            "the body must be a JSON object",
            [{"path": [], "message": "must be a JSON object", "code": "object_type"}],
        )
    type_problems = _order_type_problems(data)
    try:
        request = OrderRequest.model_validate(data)
    except ValidationError as exc:
        details = _validation_details(exc)
        if not any(d["path"] == ["orderType"] for d in details):
            details += type_problems
        return Rejection(Refusal.INVALID, "Validation failed", f"{len(details)} problem(s) in the order", details)
    if type_problems:
        return Rejection(Refusal.INVALID, "Validation failed", f"{len(type_problems)} problem(s) in the order", type_problems)
    request = request.model_copy(update={"order_type": canonical(request.order_type)})
    try:
        policy_of(request.order_type).check(request)
    except PydanticCustomError as exc:
        code = exc.type
        details = [{"path": [problem_field(code) or "orderType"], "message": exc.message(), "code": code}]
        return Rejection(Refusal.INVALID, "Validation failed", "1 problem(s) in the order", details)
    if now_ms is not None and request.expires_at is not None and request.expires_at <= now_ms:
        message = "expiresAt must be in the future (epoch milliseconds)"
        return Rejection(
            Refusal.INVALID, "Validation failed", message, [{"path": ["expiresAt"], "message": message, "code": "in_the_past"}]
        )
    listed = (request.token_in, request.token_out) in tradable
    if not listed and policy_of(request.order_type).needs_listed_pair:
        message = f"no venue trades the pair {request.token_in}/{request.token_out}"
        return Rejection(
            Refusal.INVALID, "Unsupported pair", message, [{"path": ["tokenIn"], "message": message, "code": "unsupported_pair"}]
        )
    return request


def request_fingerprint(request: OrderRequest) -> str:
    """A hash of what the order asks for, to tell an idempotent retry from a different request."""
    canonical = json.dumps(request.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_order(
    request: OrderRequest,
    now_ms: float,
    *,
    account: str = LOCAL_ACCOUNT,
    order_id: str | None = None,
    notional_usd: float | None = None,
    max_age_s: float | None = None,
) -> tuple[Order, OrderEvent]:
    """A new pending order of ``account`` and its first event. An order type with a maximum age
    (:meth:`OrderTypePolicy.default_expiry`) expires then at the latest, whatever ``expiresAt`` says."""
    order_id = order_id or new_order_id(int(now_ms))
    policy = policy_of(request.order_type)
    expires = [e for e in (request.expires_at, policy.default_expiry(now_ms, max_age_s)) if e is not None]
    order = Order(
        order_id=order_id,
        token_in=request.token_in,
        token_out=request.token_out,
        amount=request.amount,
        order_type=request.order_type,
        status=OrderStatus.PENDING,
        submitted_at=now_ms,
        slippage_bps=request.slippage_bps,
        expires_at=float(min(expires)) if expires else None,
        account=account,
        notional_usd=notional_usd,
        **policy.terms(request),
    )
    return order, OrderEvent(order_id=order_id, seq=1, status=OrderStatus.PENDING, at=now_ms)


@dataclass(frozen=True)
class NewOrder:
    """An order to store at intake, with its first event and its idempotency key (if any)."""

    order: Order
    first: OrderEvent
    idempotency_key: str | None = None
    request_hash: str | None = None


class IntakeJournal(Protocol):
    async def insert_orders(self, batch: list[NewOrder]) -> list[DuplicateRequest | None]:
        """Store every order of ``batch`` with its first event, atomically; per order, None if
        stored or the earlier order its idempotency key belongs to."""
        ...

    async def delete_orders(self, order_ids: list[str]) -> None: ...


class IntakeQueue(Protocol):
    async def accept_many(self, orders: list[Order]) -> None: ...


@dataclass(frozen=True)
class Accepted:
    order_id: str
    replayed: bool = False


class OrderIntake:
    """Stores orders durably: PostgreSQL, then Redis, or neither.

    Concurrent submissions share round trips (one INSERT and one Redis pipeline per batch, see
    :class:`engine.batching.Coalescer`); each caller still gets its answer only once its order
    is in both stores, so a 202 keeps meaning "durable".
    """

    def __init__(
        self,
        journal: IntakeJournal,
        queue: IntakeQueue,
        max_batch: int = 128,
        max_in_flight: int = 2,
        market_max_age_s: float | None = None,
    ) -> None:
        self.journal = journal
        self.queue = queue
        self.market_max_age_s = market_max_age_s
        self._writer: Coalescer[NewOrder, Accepted | Rejection] = Coalescer(self._store, max_batch, max_in_flight)

    async def submit(
        self,
        request: OrderRequest,
        now_ms: float,
        idempotency_key: str | None = None,
        *,
        account: str = LOCAL_ACCOUNT,
        order_id: str | None = None,
        notional_usd: float | None = None,
    ) -> Accepted | Rejection:
        """Store the order durably. Idempotency keys belong to ``account``: another account's equal key is
        another key."""
        order, first = new_order(
            request,
            now_ms,
            account=account,
            order_id=order_id,
            notional_usd=notional_usd,
            max_age_s=self.market_max_age_s,
        )
        fingerprint = request_fingerprint(request) if idempotency_key else None
        return await self._writer.submit(NewOrder(order, first, idempotency_key, fingerprint))

    async def _store(self, batch: list[NewOrder]) -> list[Accepted | Rejection]:
        try:
            found = await self.journal.insert_orders(batch)
        except StoreUnavailable as exc:
            message = f"the order could not be stored durably ({exc.store} is unavailable); nothing was accepted"
            return [Rejection(Refusal.UNAVAILABLE, "Service unavailable", message)] * len(batch)
        results: list[Accepted | Rejection] = []
        fresh: list[Order] = []
        for item, duplicate in zip(batch, found, strict=True):
            if duplicate is None:
                fresh.append(item.order)
                results.append(Accepted(item.order.order_id))
            elif duplicate.request_hash != item.request_hash:
                results.append(
                    Rejection(Refusal.CONFLICT, "Idempotency key reused", "this Idempotency-Key was used with a different request body")
                )
            else:
                results.append(Accepted(duplicate.order_id, replayed=True))
        if not fresh:
            return results
        try:
            await self.queue.accept_many(fresh)
        except StoreUnavailable as exc:
            try:
                await self.journal.delete_orders([o.order_id for o in fresh])
            except StoreUnavailable:
                log.error("intake compensation failed; orders left pending in postgres", extra={"orders": len(fresh)})
            message = f"the order could not be queued ({exc.store} is unavailable); nothing was accepted"
            refused = Rejection(Refusal.UNAVAILABLE, "Service unavailable", message)
            return [refused if isinstance(r, Accepted) and not r.replayed else r for r in results]
        return results
