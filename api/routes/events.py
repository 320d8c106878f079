"""The account-wide event stream: WebSocket ``/api/stream``.

Every event of the caller's orders, each with a global, increasing ``eventId``; ``?since=<eventId>``
resumes after that event (nothing missed, nothing repeated, also across restarts); without it the
stream starts at the log's head. Filters: ``status`` and ``orderType``, comma-separated.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from api.deps import Edge, edge
from api.feed import StreamFilter, Subscription
from api.streams import LimitedSocket, admitted, limited
from engine import wire
from engine.accounts import Principal
from engine.adapters.event_log import EventLog, LoggedEvent
from engine.errors import StoreUnavailable
from engine.models import OrderStatus
from engine.order_types import canonical

router = APIRouter(tags=["stream"])

REPLAY_PAGE = 500
STATUSES = frozenset(s.value for s in OrderStatus)


class BadQuery(ValueError):
    pass


def _listed(raw: str | None) -> list[str] | None:
    return [part.strip() for part in raw.split(",") if part.strip()] if raw else None


def parse_query(params: dict[str, str]) -> tuple[int | None, StreamFilter]:
    """``since``, ``status`` and ``orderType`` of the handshake; raises :class:`BadQuery` saying what is wrong."""
    since: int | None = None
    if "since" in params:
        raw = params["since"]
        if not raw.isdigit() or len(raw) > 18:
            raise BadQuery("since must be an eventId (a non-negative integer)")
        since = int(raw)
    statuses = _listed(params.get("status"))
    if statuses is not None and not set(statuses) <= STATUSES:
        raise BadQuery(f"status must be among {', '.join(sorted(STATUSES))}")
    types = _listed(params.get("orderType"))
    canonical_types = [canonical(t) for t in types] if types is not None else None
    if canonical_types is not None and any(t is None for t in canonical_types):
        raise BadQuery("orderType must be registered order types (MARKET, LIMIT, SNIPER, ...)")
    return since, StreamFilter(
        order_types=frozenset(t for t in canonical_types if t is not None) if canonical_types is not None else None,
        statuses=frozenset(statuses) if statuses is not None else None,
    )


def message(item: LoggedEvent) -> dict[str, Any]:
    """The order's status message (:func:`engine.wire.status_message`), typed ``event``, with its ``eventId``."""
    return {**wire.status_message(item.event), "type": "event", "eventId": item.event_id}


async def _replay(socket: WebSocket, log: EventLog, since: int, stream_filter: StreamFilter) -> int:
    """Send the stored events after ``since`` that pass the filter; returns the last id read."""
    position = since
    order_types = sorted(stream_filter.order_types) if stream_filter.order_types is not None else None
    statuses = sorted(stream_filter.statuses) if stream_filter.statuses is not None else None
    while True:
        page = await log.after(position, REPLAY_PAGE, order_types=order_types, statuses=statuses, account=stream_filter.account)
        for item in page:
            await socket.send_json(message(item))
            position = item.event_id
        if len(page) < REPLAY_PAGE:
            return position


async def _pongs(socket: WebSocket | LimitedSocket, queue: asyncio.Queue[LoggedEvent | None]) -> None:
    """Answer pings; when the client goes away, end the stream (a ``None`` on its queue)."""
    try:
        while True:
            try:
                received = await socket.receive_json()
            except (WebSocketDisconnect, RuntimeError):
                return
            except (ValueError, TypeError, KeyError):
                await socket.send_json({"type": "error", "message": "messages must be JSON text"})
                continue
            if isinstance(received, dict) and received.get("type") == "ping":
                await socket.send_json({"type": "pong", "timestamp": wire.ms(time.time() * 1000)})
    finally:
        queue.put_nowait(None)


async def _live(socket: WebSocket, subscription: Subscription, sent: int, inbound: LimitedSocket | None = None) -> None:
    reader = asyncio.create_task(_pongs(inbound or socket, subscription.queue))
    try:
        while (item := await subscription.queue.get()) is not None:
            if item.event_id <= sent:
                continue  # already sent by the replay
            await socket.send_json(message(item))
            sent = item.event_id
    finally:
        reader.cancel()


@router.websocket("/api/stream")
async def account_stream(websocket: WebSocket) -> None:
    here = await edge().ready()
    async with admitted(websocket, here) as who:
        if who is not None:
            await _account_stream(websocket, here, who)


async def _account_stream(websocket: WebSocket, here: Edge, who: Principal) -> None:
    """Every event of the caller's account (an admin's: every account's)."""
    try:
        since, stream_filter = parse_query(dict(websocket.query_params))
    except BadQuery as exc:
        await websocket.send_json({"type": "error", "message": str(exc)})
        await websocket.close(code=4400)
        return
    if not who.is_admin:
        stream_filter = dataclasses.replace(stream_filter, account=who.account)
    feed = await here.event_feed()
    subscription = feed.subscribe(stream_filter)  # live events buffer from now on, while the replay runs
    try:
        start = feed.position if since is None else since
        await websocket.send_json({"type": "connected", "eventId": start, "timestamp": wire.ms(time.time() * 1000)})
        sent = await _replay(websocket, feed.log, start, stream_filter)
        await _live(websocket, subscription, sent, limited(websocket, here))
    except StoreUnavailable:
        with contextlib.suppress(Exception):
            await websocket.send_json({"type": "error", "message": "the event log is unavailable; resume with since"})
            await websocket.close(code=1011)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        feed.unsubscribe(subscription)
