"""The control channel: what every replica must hear at once (a key revoked, an account's limits or the
trading state changed), over Redis pub/sub, and the per-replica cache it keeps honest.

A replica caches keys and limits only while it is subscribed: each (re)subscription starts a new
*generation*, and an entry cached in an older one is not trusted. A message lost while the subscription
was down therefore cannot leave a revoked key usable; the cost is one store read per key after a
reconnect. While unsubscribed every lookup goes to PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import redis.asyncio as aioredis

from engine.adapters.admission_store import guarded

log = logging.getLogger("engine.control")

T = TypeVar("T")

KEY_REVOKED = "key_revoked"
LIMITS_CHANGED = "limits"
TRADING_CHANGED = "trading"


class ControlChannel:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.channel = f"{prefix}control"
        self.generation = 0
        self.connected = False
        self._handlers: list[Callable[[str, str], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def on_message(self, handler: Callable[[str, str], None]) -> None:
        self._handlers.append(handler)

    async def publish(self, kind: str, value: str) -> int:
        """Tell every replica; how many subscribers got it."""
        payload = json.dumps({"kind": kind, "value": value})
        return int(await guarded(lambda: self.client.publish(self.channel, payload)))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def wait_ready(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        return self.connected

    async def _run(self) -> None:
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.generation += 1  # nothing cached before this subscription is trusted
                self.connected = True
                self._ready.set()
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None and message.get("type") == "message":
                        self._dispatch(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a lost connection: distrust the caches until subscribed again
                if self.connected:
                    log.warning("control channel lost; caches bypassed until it is back", extra={"error": type(exc).__name__})
                self.connected = False
                self.generation += 1
                await asyncio.sleep(0.5)
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8.2

    def _dispatch(self, data: object) -> None:
        try:
            raw = data.decode() if isinstance(data, bytes) else str(data)
            body = json.loads(raw)
            kind, value = str(body["kind"]), str(body["value"])
        except (ValueError, KeyError, TypeError):
            return
        for handler in self._handlers:
            handler(kind, value)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


@dataclass(slots=True)
class _Entry(Generic[T]):
    value: T
    at: float
    generation: int


class TrustedCache(Generic[T]):
    """Values cached for ``ttl_s``, trusted only within the channel generation they were cached in (and
    only while the channel is connected). ``forget`` drops one at once (its change was announced).

    A value read from the store is cached only if nothing was forgotten while it was being read
    (:meth:`token` before the read, :meth:`put` after): else a revocation that arrived mid-read could be
    overwritten by the value read before it.
    """

    def __init__(self, channel: ControlChannel, ttl_s: float, size: int = 10_000) -> None:
        self.channel = channel
        self.ttl_s = ttl_s
        self.size = size
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()
        self._forgets = 0
        self.hits = 0
        self.misses = 0

    def token(self) -> tuple[int, int]:
        return self.channel.generation, self._forgets

    def get(self, key: str) -> tuple[bool, T | None]:
        entry = self._entries.get(key)
        if (
            entry is None
            or not self.channel.connected
            or entry.generation != self.channel.generation
            or time.monotonic() - entry.at >= self.ttl_s
        ):
            self.misses += 1
            return False, None
        self.hits += 1
        return True, entry.value

    def put(self, key: str, value: T, token: tuple[int, int]) -> None:
        if not self.channel.connected or self.ttl_s <= 0 or token != self.token():
            return
        self._entries[key] = _Entry(value, time.monotonic(), self.channel.generation)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def forget(self, key: str) -> None:
        self._forgets += 1
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._forgets += 1
        self._entries.clear()
