"""The replica's feed of the engine-wide event log: one reader per replica, fanned out to its
account-wide streams (``WS /api/stream``).

The reader wakes on the log's ``NOTIFY`` (and polls as a safety net), reads what was numbered since
its last position, and hands each event to the local subscriptions whose filters it passes. A stream
that resumes from an older ``eventId`` reads PostgreSQL first, then takes the live events it buffered
meanwhile, skipping what it already sent: nothing missed, nothing repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import asyncpg

from engine.adapters.event_log import CHANNEL, EventLog, LoggedEvent
from engine.errors import StoreUnavailable

log = logging.getLogger("api.feed")

POLL_S = 1.0
"""Read the log this often even without a notification (a lost NOTIFY, a reconnect)."""
PAGE = 1_000


@dataclass(frozen=True)
class StreamFilter:
    """Which events a stream wants (None: any)."""

    order_types: frozenset[str] | None = None
    statuses: frozenset[str] | None = None
    account: str | None = None
    """Only this account's orders (None: every account's, for an admin)."""

    def passes(self, item: LoggedEvent) -> bool:
        return (
            (self.order_types is None or item.order_type in self.order_types)
            and (self.statuses is None or item.event.status.value in self.statuses)
            and (self.account is None or item.account == self.account)
        )


@dataclass(eq=False)
class Subscription:
    """A stream's place in the feed: the events that passed its filter (``None``: the stream ends)."""

    filter: StreamFilter
    queue: asyncio.Queue[LoggedEvent | None] = field(default_factory=asyncio.Queue)


class EventFeed:
    def __init__(self, pool: asyncpg.Pool, database_url: str) -> None:
        self.log = EventLog(pool)
        self._database_url = database_url
        self._subscriptions: set[Subscription] = set()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self.position = 0

    async def start(self) -> None:
        """Start reading from the log's current head (idempotent); returns once the position is known."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        await self._started.wait()

    def subscribe(self, stream_filter: StreamFilter) -> Subscription:
        subscription = Subscription(stream_filter)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    async def _run(self) -> None:
        listener: asyncpg.Connection | None = None
        while not self._started.is_set():
            try:
                self.position = await self.log.head()
                self._started.set()
            except StoreUnavailable:
                await asyncio.sleep(POLL_S)
        try:
            while True:
                if listener is None or listener.is_closed():
                    listener = await self._listen()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), POLL_S)
                self._wakeup.clear()
                await self._read()
        finally:
            if listener is not None and not listener.is_closed():
                with contextlib.suppress(Exception):
                    await listener.close()

    async def _listen(self) -> asyncpg.Connection | None:
        """A connection of its own that LISTENs to the log's channel (None while PostgreSQL is down)."""
        try:
            connection: asyncpg.Connection = await asyncpg.connect(self._database_url, timeout=10)
            await connection.add_listener(CHANNEL, lambda *_: self._wakeup.set())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("event feed cannot listen; polling", extra={"error": type(exc).__name__})
            return None
        return connection

    async def _read(self) -> None:
        try:
            while True:
                page = await self.log.after(self.position, PAGE)
                for item in page:
                    for subscription in tuple(self._subscriptions):
                        if subscription.filter.passes(item):
                            subscription.queue.put_nowait(item)
                    self.position = item.event_id
                if len(page) < PAGE:
                    return
        except StoreUnavailable as exc:
            log.warning("event feed read failed; retrying", extra={"error": str(exc)})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
