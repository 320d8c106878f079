"""StatusHub: each order's live event log, pushed to the Serve replicas that hold its WebSockets.

Subscribers are replicas, not sockets: a replica subscribes per order, long-polls
``poll(replica_id)`` for everything of its orders, and fans out to its own
sockets. The hub keeps logs of open orders (and of finished ones for a while)
so a late subscriber gets the history; PostgreSQL keeps it for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict

from engine.gc_tuning import tune_garbage_collection
from engine.trail import Message, Trail, is_terminal


class StatusHub:
    def __init__(self, keep_finished_s: float = 60.0, subscriber_ttl_s: float = 30.0) -> None:
        tune_garbage_collection()
        self._trails: dict[str, Trail] = {}
        self._finished_at: dict[str, float] = {}
        self._subscribers: dict[str, set[str]] = defaultdict(set)
        self._inboxes: dict[str, list[Message]] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._last_seen: dict[str, float] = {}
        self._keep_finished_s = keep_finished_s
        self._subscriber_ttl_s = subscriber_ttl_s
        self._epochs: dict[str, int] = {}  # order -> the newest run epoch seen publishing for it
        self.published = 0
        self.stale_dropped = 0
        self.incarnation = uuid.uuid4().hex  # changes when the actor restarts: replicas then re-subscribe

    def _inbox(self, replica_id: str) -> list[Message]:
        self._last_seen[replica_id] = time.monotonic()
        self._wakeups.setdefault(replica_id, asyncio.Event())
        return self._inboxes.setdefault(replica_id, [])

    async def publish_many(self, events: list[Message]) -> None:
        """Events of many orders in one call (an executor's batch), each in its order's log."""
        for event in events:
            self._publish(event)
        self._expire()

    async def publish_runs(self, items: list[tuple[int, Message]]) -> None:
        """Events of many orders, each with the epoch of the run that emitted it (-1: unfenced). An
        event from a run older than the newest seen for its order is dropped: that run was replaced
        (a zombie executor), and its events never become the order's history."""
        for epoch, event in items:
            order_id = event["orderId"]
            newest = self._epochs.get(order_id, -1)
            if 0 <= epoch < newest:
                self.stale_dropped += 1
                continue
            if epoch > newest:
                self._epochs[order_id] = epoch
            self._publish(event)
        self._expire()

    def _publish(self, event: Message) -> None:
        order_id = event["orderId"]
        out = self._trails.setdefault(order_id, Trail()).publish(event)
        if out is None:
            return
        self.published += 1
        for replica_id in self._subscribers.get(order_id, ()):
            if replica_id in self._inboxes:
                self._inboxes[replica_id].append(out)
                self._wakeups[replica_id].set()
        if is_terminal(out):
            self._finished_at.pop(order_id, None)  # kept in finishing order: expiry stops at the first young one
            self._finished_at[order_id] = time.monotonic()
            self._subscribers.pop(order_id, None)

    async def subscribe(self, replica_id: str, order_id: str) -> list[Message]:
        """Register interest; return the events so far. Later ones arrive through ``poll``."""
        self._inbox(replica_id)
        trail = self._trails.get(order_id)
        events = trail.ordered() if trail is not None else []
        if not (events and is_terminal(events[-1])):
            self._subscribers[order_id].add(replica_id)
        return events

    async def subscribe_many(self, replica_id: str, order_ids: list[str]) -> list[list[Message]]:
        """:meth:`subscribe` for several orders in one call (streams opening together)."""
        return [await self.subscribe(replica_id, order_id) for order_id in order_ids]

    async def unsubscribe(self, replica_id: str, order_id: str) -> None:
        subs = self._subscribers.get(order_id)
        if subs is not None:
            subs.discard(replica_id)
            if not subs:
                del self._subscribers[order_id]

    async def poll(self, replica_id: str, timeout_s: float = 10.0) -> tuple[str, list[Message]]:
        """Wait until events are queued for this replica (or the timeout); return this hub's
        incarnation and the events."""
        inbox = self._inbox(replica_id)
        if not inbox:
            wakeup = self._wakeups[replica_id]
            wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout_s)
            self._wakeups.setdefault(replica_id, wakeup)  # expired while waiting: keep it whole
        batch = self._inboxes.get(replica_id, [])
        self._inboxes[replica_id] = []
        self._last_seen[replica_id] = time.monotonic()
        return self.incarnation, batch

    def _expire(self) -> None:
        now = time.monotonic()
        # Oldest first, stopping at the first one still kept: no full scan per call.
        while self._finished_at:
            order_id, at = next(iter(self._finished_at.items()))
            if now - at <= self._keep_finished_s:
                break
            del self._finished_at[order_id]
            self._trails.pop(order_id, None)
            self._epochs.pop(order_id, None)
        for replica_id, seen in list(self._last_seen.items()):
            if now - seen > self._subscriber_ttl_s:
                self._inboxes.pop(replica_id, None)
                self._wakeups.pop(replica_id, None)
                del self._last_seen[replica_id]
                for subs in self._subscribers.values():
                    subs.discard(replica_id)

    def stats(self) -> dict[str, int]:
        return {
            "orders": len(self._trails),
            "replicas": len(self._inboxes),
            "published": self.published,
            "stale_dropped": self.stale_dropped,
        }
