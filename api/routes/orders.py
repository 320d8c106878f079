"""Orders: submit, read, cancel, list."""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError
from starlette.types import ASGIApp, Receive, Scope, Send

from api import admission
from api.auth import Reader, Trader, caller_with, forbidden
from api.deps import ReadyEdge, edge, serve_request_key
from api.errors import EdgeError, error_response, not_found, rejected, unavailable
from api.schemas import ActiveOrder, CancelPending, OrderAccepted, OrderPage, errors
from engine import wire
from engine.accounts import Scope as AuthScope
from engine.accounts import valid_account
from engine.cancellation import CancelRefused, cancel
from engine.clock import SystemClock
from engine.errors import OrderNotFound, StoreUnavailable
from engine.ids import parse_order_id
from engine.intake import Rejection, parse_order
from engine.logs import bind
from engine.models import OrderStatus, OrderTypeName, TokenName
from engine.queries import decode_cursor, encode_cursor, find_order

router = APIRouter(prefix="/api/orders", tags=["orders"])
log = logging.getLogger("api.orders")

IDEMPOTENCY_KEY_MAX = 255
CLOCK = SystemClock()

_BODY_SCHEMA = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OrderRequest"}}}}
}


async def read_body(request: Request, limit: int) -> bytes:
    """At most ``limit`` bytes; a larger body is refused without being read into memory."""
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise EdgeError(400, "Bad request", "Content-Length must be a number of bytes")
    too_large = EdgeError(413, "Payload too large", f"the body must be at most {limit} bytes")
    if declared is not None and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/execute",
    status_code=202,
    response_model=OrderAccepted,
    responses=errors(400, 413, 415, 422, 429, 503),
    openapi_extra=_BODY_SCHEMA,
    summary="Submit an order; follow it on the WebSocket",
)
async def execute(request: Request, who: Trader) -> JSONResponse:
    """The body is parsed here (not by FastAPI) so that its size, its JSON and every error are ours."""
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", ""):
        return error_response(415, "Unsupported media type", "send the order as JSON with Content-Type: application/json")
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= IDEMPOTENCY_KEY_MAX):
        return error_response(400, "Validation failed", f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} characters")
    here = edge()
    raw = await read_body(request, here.settings.max_body_bytes)
    now_ms = time.time() * 1000.0
    parsed = parse_order(raw, now_ms, here.tradable)
    if isinstance(parsed, Rejection) and parsed.error == "Unsupported pair" and await here.refresh_pairs():
        parsed = parse_order(raw, now_ms, here.tradable)  # a pool listed since, maybe through another replica
    if isinstance(parsed, Rejection):
        return rejected(parsed)
    return await admission.submit(await here.ready(), who, parsed, key or serve_request_key(), time.time() * 1000.0)


@router.get("/{order_id}", response_model=ActiveOrder, responses=errors(404, 503), summary="An order's current state")
async def get_order(order_id: str, here: ReadyEdge, who: Reader) -> JSONResponse:
    oid = parse_order_id(order_id)
    order = await find_order(oid, here.orders, here.journal) if oid is not None else None
    if order is None or not who.sees(order.account):  # another account's order is as unknown as a missing one
        return not_found()
    return JSONResponse(wire.active_order(order))


@router.delete(
    "/{order_id}",
    response_model=ActiveOrder,
    responses={202: {"model": CancelPending, "description": "Cancel recorded; the order has not closed yet"}, **errors(404, 409, 503)},
    summary="Cancel an order that has not been submitted to a venue yet",
)
async def cancel_order(order_id: str, here: ReadyEdge, who: Trader) -> JSONResponse:
    oid = parse_order_id(order_id)
    if oid is None:
        return not_found()
    bind(order_id=oid)
    if not who.is_admin:  # only its own orders: another account's is as unknown as a missing one
        owned = await find_order(oid, here.orders, here.journal)
        if owned is None or owned.account != who.account:
            return not_found()
    try:
        order = await cancel(oid, here.journal, here.orders, CLOCK)
    except OrderNotFound:
        return not_found()
    except CancelRefused as exc:
        log.info("cancel refused", extra={"reason": exc.reason})
        return error_response(409, "Conflict", exc.reason)
    log.info("cancel requested", extra={"closed": order is not None})
    if order is None:
        return JSONResponse(CancelPending(orderId=oid, status="cancelling", message="cancellation requested").model_dump(), status_code=202)
    return JSONResponse(wire.active_order(order))


def _cursor(raw: str) -> str:
    if decode_cursor(raw) is None:
        raise PydanticCustomError("invalid_cursor", "not a cursor this API returned")
    return raw


Cursor = Annotated[str, AfterValidator(_cursor)]
"""An opaque page cursor: a ``nextCursor`` this API returned."""


def _account(raw: str) -> str:
    if not valid_account(raw):
        raise PydanticCustomError("account", "1-64 of a-z 0-9 _ . -, starting with a letter or digit")
    return raw


AccountName = Annotated[str, AfterValidator(_account)]


@router.get("", response_model=OrderPage, responses=errors(400, 503), summary="List orders, newest first")
async def list_orders(
    here: ReadyEdge,
    who: Reader,
    status: OrderStatus | None = None,
    order_type: Annotated[OrderTypeName | None, Query(alias="orderType")] = None,
    token_in: Annotated[TokenName | None, Query(alias="tokenIn")] = None,
    token_out: Annotated[TokenName | None, Query(alias="tokenOut")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor | None = None,
    account: Annotated[AccountName | None, Query(description="Admin: only this account's orders")] = None,
) -> JSONResponse:
    if account is not None and not who.sees(account):
        raise forbidden("only an admin key lists another account's orders")
    orders = await here.journal.list_orders(
        account=account if who.is_admin else who.account,
        status=status.value if status else None,
        order_type=order_type,
        token_in=token_in,
        token_out=token_out,
        limit=limit,
        before=decode_cursor(cursor) if cursor else None,
    )
    next_cursor = encode_cursor(orders[-1]) if len(orders) == limit else None
    return JSONResponse({"orders": [wire.active_order(o) for o in orders], "nextCursor": next_cursor})


class FastExecute:
    """ASGI: ``POST /api/orders/execute`` straight to :func:`execute`, past FastAPI's routing, dependency
    solving and middlewares: the same checks, in the same order, and the same answers, for a fraction of the
    framework's work per order. The FastAPI route stays the documented one and serves what this passes on
    (a browser's request, which carries an ``Origin`` for CORS; any other method or path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != EXECUTE_PATH or _has_origin(scope):
            await self.app(scope, receive, send)
            return
        scope["route"] = EXECUTE_ROUTE
        request = Request(scope, receive)
        try:
            response = await execute(request, await caller_with(request, AuthScope.TRADE))
        except EdgeError as exc:
            response = error_response(exc.status, exc.error, exc.message, exc.details, exc.headers)
        except StoreUnavailable as exc:
            response = unavailable(exc)
        await response(scope, receive, send)


def _has_origin(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope["headers"])


EXECUTE_PATH = "/api/orders/execute"
EXECUTE_ROUTE = next(r for r in router.routes if getattr(r, "path", None) == EXECUTE_PATH and "POST" in getattr(r, "methods", ()))
"""The documented route, named in the scope as FastAPI names it (the request metrics label by its path)."""
