"""The Serve replica's side of the StatusHub: one long-poll per replica, fanned out to local sockets.

A WebSocket registers a local queue here, then subscribes at the hub (which
answers with the history it holds). Events are merged with PostgreSQL's trail by
``seq`` so the client sees each event once, in order, from the first.

While an order has sockets here, the replica keeps its trail (the merged history plus every
event since), so the next socket for that order needs neither a hub call nor a PostgreSQL read
when the trail is whole (every seq from 1 to the latest).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from typing import Any

from engine.batching import Coalescer
from engine.trail import Message, Signal, Trail

log = logging.getLogger("actors.subscriptions")

OUTAGE_CATCH_UP_S = 5.0
Item = Message | Signal
"""What a stream's queue carries: the hub's events, and signals."""


class ReplicaSubscriptions:
    def __init__(self, hub: Any, poll_timeout_s: float = 10.0) -> None:
        self.hub = hub
        self.replica_id = f"replica-{uuid.uuid4().hex[:12]}"
        self._local: dict[str, set[asyncio.Queue[Item]]] = defaultdict(set)
        self._trails: dict[str, Trail] = {}  # orders with sockets here
        self.opened_from_trail = 0
        self._poll_timeout_s = poll_timeout_s
        self._task: asyncio.Task[None] | None = None
        self._caught_up_at = -OUTAGE_CATCH_UP_S
        # streams opening together subscribe in one hub call
        self._subscriptions: Coalescer[str, list[Message]] = Coalescer(self._subscribe_many, max_batch=256, max_in_flight=4)

    async def _subscribe_many(self, order_ids: list[str]) -> list[list[Message]]:
        histories: list[list[Message]] = await self.hub.subscribe_many.remote(self.replica_id, order_ids)
        return histories

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._poll_loop())

    async def _poll_loop(self) -> None:
        incarnation: str | None = None
        quick = False  # after a failed poll, ask at once: a restarted hub knows none of our orders yet
        while True:
            try:
                hub_id, batch = await self.hub.poll.remote(self.replica_id, 0.0 if quick else self._poll_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # hub restarting: streams fall back to PostgreSQL meanwhile
                log.warning("hub poll failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                quick = True
                if time.monotonic() - self._caught_up_at >= OUTAGE_CATCH_UP_S:  # hub down: streams read PostgreSQL
                    self._catch_up()
                await asyncio.sleep(0.5)
                continue
            quick = False
            if incarnation is not None and hub_id != incarnation:
                await self._resubscribe()
                self._catch_up()  # events published while the hub was away are only in PostgreSQL
            incarnation = hub_id
            self._dispatch(batch)

    def _catch_up(self) -> None:
        """Tell every local stream to read its order's trail from PostgreSQL now."""
        self._caught_up_at = time.monotonic()
        self._trails.clear()  # events may have been lost: the next socket of each order merges afresh
        for queues in tuple(self._local.values()):
            for queue in tuple(queues):
                queue.put_nowait(Signal.CATCH_UP)

    def _dispatch(self, events: list[Message]) -> None:
        for event in events:
            order_id = event["orderId"]
            trail = self._trails.get(order_id)
            if trail is not None:
                trail.apply(event)
            for queue in tuple(self._local.get(order_id, ())):
                queue.put_nowait(event)

    async def _resubscribe(self) -> None:
        """The hub restarted with no memory of us: subscribe again to every order followed here."""
        orders = list(self._local)
        log.warning("status hub restarted; re-subscribing", extra={"orders": len(orders), "replica": self.replica_id})
        for order_id in orders:
            with contextlib.suppress(Exception):
                self._dispatch(await self.hub.subscribe.remote(self.replica_id, order_id))

    async def open(self, order_id: str) -> tuple[asyncio.Queue[Item], list[Message]]:
        """Start following ``order_id``: a queue of live events and the history so far (the whole
        trail if this replica holds it whole, else what the hub holds)."""
        queue: asyncio.Queue[Item] = asyncio.Queue()
        self._local[order_id].add(queue)
        trail = self._trails.get(order_id)
        if trail is not None and trail.is_whole():
            self.opened_from_trail += 1
            return queue, trail.ordered()  # taken with the queue registered: nothing falls between
        self._trails.setdefault(order_id, Trail())  # from now on, every event dispatched here is kept
        try:
            history: list[Message] = await self._subscriptions.submit(order_id)
        except Exception as exc:
            log.warning("hub subscribe failed; using postgres only", extra={"order_id": order_id, "error": type(exc).__name__})
            history = []
        return queue, history

    def remember(self, order_id: str, events: list[Message]) -> None:
        """Add a stream's merged history (PostgreSQL's trail and the hub's) to the order's trail here;
        events dispatched since the stream opened are newer and stay."""
        trail = self._trails.get(order_id)
        if trail is not None:
            trail.merge(events)

    async def close(self, order_id: str, queue: asyncio.Queue[Item]) -> None:
        subs = self._local.get(order_id)
        if subs is not None:
            subs.discard(queue)
            if not subs:
                del self._local[order_id]
                self._trails.pop(order_id, None)
                with contextlib.suppress(Exception):
                    await self.hub.unsubscribe.remote(self.replica_id, order_id)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
