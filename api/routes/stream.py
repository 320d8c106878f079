"""Following an order: WebSocket ``/api/orders/{orderId}/status``.

On connect: ``connected``, then the order's past events in seq order, then live ones; the socket
closes after the terminal event. The merge of the hub's events with PostgreSQL's trail (gaps,
corrections, catch-up) is :mod:`engine.trail`'s; this module moves messages and answers pings.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from typing import Any, Protocol

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from api.deps import Edge, edge
from api.streams import admitted, limited
from api.subscriptions import Item, ReplicaSubscriptions
from engine import wire
from engine.accounts import Principal
from engine.errors import StoreUnavailable
from engine.ids import parse_order_id
from engine.logs import bind
from engine.queries import find_order
from engine.trail import Delivery, Message, Signal, Trail

router = APIRouter(tags=["stream"])

QUIET_CHECK_S = 30.0
"""A stream with no event for this long reads PostgreSQL (a safety net: hub trouble triggers a read at once)."""
ENCODED_KEEP = 20_000


class Socket(Protocol):
    """The part of a WebSocket a stream uses."""

    async def send_json(self, data: Any, mode: str = "text") -> None: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...

    async def receive_json(self, mode: str = "text") -> Any: ...


class Trails(Protocol):
    async def events(self, order_id: str) -> list[Any]: ...


class EncodedMessages:
    """Each event encoded to JSON text once for every socket that follows its order."""

    def __init__(self, keep: int = ENCODED_KEEP) -> None:
        self._texts: OrderedDict[tuple[str, int, str, bool], str] = OrderedDict()
        self._keep = keep

    def text(self, message: Message) -> str:
        key = (message["orderId"], message["seq"], message["status"], bool(message.get("correction")))
        text = self._texts.get(key)
        if text is None:
            text = json.dumps(message, separators=(",", ":"))
            self._texts[key] = text
            if len(self._texts) > self._keep:
                self._texts.popitem(last=False)
        return text


ENCODED = EncodedMessages()


async def refuse(socket: Socket) -> None:
    await socket.send_json({"type": "error", "message": "order not found"})
    await socket.close(code=4404)


async def persisted(journal: Trails, order_id: str) -> list[Message]:
    """The order's stored trail as messages (empty while PostgreSQL is down: the next read catches up)."""
    try:
        return [wire.status_message(event) for event in await journal.events(order_id)]
    except StoreUnavailable:
        return []


async def answer_pings(socket: Socket, queue: asyncio.Queue[Item]) -> None:
    """Answer ``{"type":"ping"}`` with ``{"type":"pong"}``; when the client goes away, end the stream."""
    try:
        while True:
            try:
                message = await socket.receive_json()
            except (WebSocketDisconnect, RuntimeError):
                return
            except (ValueError, TypeError, KeyError):  # not JSON, or a binary frame
                await socket.send_json({"type": "error", "message": "messages must be JSON text"})
                continue
            if isinstance(message, dict) and message.get("type") == "ping":
                await socket.send_json({"type": "pong", "timestamp": wire.ms(time.time() * 1000)})
    finally:
        queue.put_nowait(Signal.GONE)


async def stream_order(
    socket: Socket,
    order_id: str,
    queue: asyncio.Queue[Item],
    history: list[Message],
    journal: Trails,
    subscriptions: ReplicaSubscriptions,
    encoded: EncodedMessages = ENCODED,
) -> None:
    """Send the order's trail, then its live events, until the terminal one (or the client leaves)."""
    trail = Trail(history)
    if not trail.is_whole():  # this replica does not hold the whole trail: read the stored one
        trail.merge(await persisted(journal, order_id))
        if not len(trail):
            await refuse(socket)
            return
        subscriptions.remember(order_id, trail.ordered())
    await socket.send_json(
        {"type": "connected", "orderId": order_id, "timestamp": wire.ms(time.time() * 1000), "message": wire.CONNECTED_MESSAGE}
    )
    delivery = Delivery()

    async def deliver(messages: list[Message]) -> bool:
        """Send what is new; True once the terminal event is sent (the socket is closed)."""
        for message in delivery.take(messages):
            await socket.send_text(encoded.text(message))
        if delivery.done:
            await socket.close(code=1000)
        return delivery.done

    if await deliver(trail.ordered()):
        return
    # One queue carries the hub's events, the catch-up signal and the reader's "gone": the loop waits
    # on it alone (no asyncio.wait of two futures per event).
    reader = asyncio.create_task(answer_pings(socket, queue))
    try:
        while True:
            try:
                async with asyncio.timeout(QUIET_CHECK_S):
                    item = await queue.get()
            except TimeoutError:  # quiet: check PostgreSQL
                if await deliver(await persisted(journal, order_id)):
                    return
                continue
            if item is Signal.GONE:
                return
            if item is Signal.CATCH_UP:  # the hub failed or restarted: it may have lost events
                batch = await persisted(journal, order_id)
            else:
                assert isinstance(item, dict)
                batch = [item]
                if delivery.has_gap(item):  # fill it from PostgreSQL
                    batch += await persisted(journal, order_id)
            if await deliver(batch):
                return
    finally:
        reader.cancel()


@router.websocket("/api/orders/{order_id}/status")
async def status_stream(websocket: WebSocket, order_id: str) -> None:
    here = await edge().ready()
    async with admitted(websocket, here) as who:
        if who is None:
            return
        oid = parse_order_id(order_id)
        if oid is None or not await visible(here, who, oid):
            await refuse(websocket)  # another account's order is as unknown as a missing one
            return
        bind(order_id=oid)
        queue, history = await here.subscriptions.open(oid)
        try:
            await stream_order(limited(websocket, here), oid, queue, history, here.journal, here.subscriptions)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            await here.subscriptions.close(oid, queue)


async def visible(here: Edge, who: Principal, order_id: str) -> bool:
    """May ``who`` follow this order? An admin may follow any (unknown ones are refused by the stream)."""
    if who.is_admin:
        return True
    try:
        order = await find_order(order_id, here.orders, here.journal)
    except StoreUnavailable:
        return False
    return order is not None and order.account == who.account
