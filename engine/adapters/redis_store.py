"""Redis: the hot copy of active orders and the dispatch queue.

Keys (all under the configured prefix):

* ``order:<id>``  the order's JSON (terminal ones expire after an hour)
* ``active``      set of ids not yet terminal
* ``queue``       sorted set of ids waiting for an executor, in bands (:class:`engine.bands.Band`), FIFO within a band
* ``sim_pairs``   pairs listed at runtime through the simulation admin routes
* ``epoch``       written at start-up; if it vanishes, Redis was restarted empty and is rebuilt from PostgreSQL
* ``acct:open:<account>``  hash of the account's open orders (id -> "reserved ms:USD value"), and
  ``acct:open_usd:<account>`` their USD total: the account's open-order cap and open notional
  (:mod:`engine.adapters.admission_store`), kept here at accept, requeue and finish (two small scripts,
  so the total moves exactly when an entry comes or goes, and admission reads two values, not the hash)

Redis here may keep nothing on disk, so it is never the only copy: PostgreSQL is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.adapters.run_fence import FENCED_WRITE, stamped, terminal_list
from engine.bands import Band
from engine.batching import Coalescer
from engine.errors import StoreUnavailable
from engine.instruments import STORE_ERRORS
from engine.lease import UNFENCED
from engine.lifecycle import TERMINAL
from engine.models import Order
from engine.order_types import band_of

T = TypeVar("T")

TERMINAL_TTL_S = 3600
_TERMINAL_LIST = terminal_list(status.value for status in TERMINAL)
_BAND_SPAN = 1e13  # epoch-ms fits below it, so the band dominates the score


def account_open_key(prefix: str, account: str) -> str:
    """The account's open orders: id -> ``"<reserved ms>:<USD value>"`` (:mod:`engine.adapters.admission_store`)."""
    return f"{prefix}acct:open:{account}"


def account_open_usd_key(prefix: str, account: str) -> str:
    """The USD total of the account's open orders (kept with :func:`account_open_key`)."""
    return f"{prefix}acct:open_usd:{account}"


OPEN_ADD = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('INCRBYFLOAT', KEYS[2], string.match(ARGV[2], ':(.*)$') or '0')
end
return 0
"""
"""Count an order among its account's open ones (once: a second add changes nothing)."""

OPEN_REMOVE = """
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if entry then
  redis.call('HDEL', KEYS[1], ARGV[1])
  if redis.call('HLEN', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[2])
  else
    redis.call('INCRBYFLOAT', KEYS[2], -(tonumber(string.match(entry, ':(.*)$')) or 0))
  end
end
return 0
"""
"""Stop counting an order (once: removing one not counted changes nothing)."""


def queue_score(order: Order) -> float:
    return band_of(order) * _BAND_SPAN + order.submitted_at


def connect(url: str) -> aioredis.Redis:
    """A client whose commands retry a broken connection twice (reconnecting, 50-200 ms apart).

    After Redis restarts, every pooled connection is dead and, without a retry, the first command
    on each failed: once that was an order's terminal write, which left its hot copy at ``submitted``
    for good (GET then disagreed with PostgreSQL). Timeouts are not retried (10 s each). A retried
    ZPOPMIN whose first reply was lost may drop a queued id; the dispatcher's sweep requeues it.
    """
    retry = Retry(ExponentialBackoff(cap=0.2, base=0.05), 2, supported_errors=(RedisConnectionError,))
    return aioredis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=15, retry=retry)


async def _guard(op: Callable[[], Awaitable[T]]) -> T:
    try:
        return await op()
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        STORE_ERRORS.inc("redis")
        raise StoreUnavailable("redis", f"{type(exc).__name__}: {exc}") from exc


class RedisOrders:
    """Active orders and the queue. Implements :class:`engine.ports.ActiveOrders`."""

    def __init__(self, client: aioredis.Redis, prefix: str = "oee:") -> None:
        self.client = client
        self._writes: Coalescer[tuple[Order, int], None] = Coalescer(self._write_many, max_batch=256, max_in_flight=2)
        self.prefix = prefix
        self.active_key = f"{prefix}active"
        self.queue_key = f"{prefix}queue"
        self.epoch_key = f"{prefix}epoch"
        self.sim_pairs_key = f"{prefix}sim_pairs"
        self._open_add = client.register_script(OPEN_ADD)
        self._open_remove = client.register_script(OPEN_REMOVE)
        self._fenced_write = client.register_script(FENCED_WRITE)

    def batching(self) -> dict[str, Coalescer[Any, Any]]:
        return {"writes": self._writes}

    def order_key(self, order_id: str) -> str:
        return f"{self.prefix}order:{order_id}"

    def open_keys(self, account: str) -> list[str]:
        return [account_open_key(self.prefix, account), account_open_usd_key(self.prefix, account)]

    @staticmethod
    def open_entry(order: Order) -> str:
        return f"{order.submitted_at!r}:{(order.notional_usd or 0.0)!r}"

    async def ping(self) -> None:
        await _guard(self.client.ping)

    async def accept(self, order: Order) -> None:
        await self.accept_many([order])

    async def accept_many(self, orders: list[Order]) -> None:
        """Intake: record, mark active and enqueue, atomically (one pipeline for the batch). The open-order
        script goes as EVAL, not as a registered script: a pipeline that carries one first asks Redis
        whether it holds it, a second round trip on every intake write."""

        async def op() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                for order in orders:
                    pipe.set(self.order_key(order.order_id), order.model_dump_json())
                    pipe.eval(OPEN_ADD, 2, *self.open_keys(order.account), order.order_id, self.open_entry(order))
                pipe.sadd(self.active_key, *(o.order_id for o in orders))
                pipe.zadd(self.queue_key, {o.order_id: queue_score(o) for o in orders}, nx=True)
                await pipe.execute()

        await _guard(op)

    async def requeue(self, orders: Iterable[Order]) -> int:
        """Put orders back (recovery, Redis rebuild, sweep). Ids already queued keep their place.

        The hot copy is written only where Redis has none (NX): these orders were read from
        PostgreSQL a moment ago, and an executor may have written a newer state since (a
        terminal one, even); a plain SET would put the older state back over it.
        """
        batch = list(orders)
        if not batch:
            return 0

        async def op() -> int:
            async with self.client.pipeline(transaction=True) as pipe:
                for order in batch:
                    pipe.set(self.order_key(order.order_id), order.model_dump_json(), nx=True)
                    pipe.sadd(self.active_key, order.order_id)
                    await self._open_add(keys=self.open_keys(order.account), args=[order.order_id, self.open_entry(order)], client=pipe)
                    pipe.zadd(self.queue_key, {order.order_id: queue_score(order)}, nx=True)
                await pipe.execute()
            return len(batch)

        return await _guard(op)

    async def update(self, order: Order, epoch: int | None = None) -> None:
        """Store the order's state; with ``epoch`` (a run's), refused if a newer run wrote it
        (:mod:`engine.adapters.run_fence`)."""
        await self._writes.submit((order, UNFENCED if epoch is None else epoch))

    async def finish(self, order: Order, epoch: int | None = None) -> None:
        """Store the terminal state (kept for an hour) and drop the order from the active set; fenced
        like :meth:`update`."""
        await self._writes.submit((order, UNFENCED if epoch is None else epoch))

    async def _write_many(self, writes: list[tuple[Order, int]]) -> list[None]:
        """Concurrent updates and finishes share one pipeline (one order at most once per batch)."""

        async def op() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                done = []
                for order, epoch in writes:
                    if epoch != UNFENCED:
                        terminal = "1" if order.status in TERMINAL else "0"
                        keys = [self.order_key(order.order_id), self.active_key, *self.open_keys(order.account)]
                        record = stamped(order.model_dump_json(), epoch)
                        args: list[str | int] = [record, epoch, terminal, order.order_id, TERMINAL_TTL_S, _TERMINAL_LIST]
                        await self._fenced_write(keys=keys, args=args, client=pipe)
                    elif order.status in TERMINAL:
                        pipe.set(self.order_key(order.order_id), order.model_dump_json(), ex=TERMINAL_TTL_S)
                        await self._open_remove(keys=self.open_keys(order.account), args=[order.order_id], client=pipe)
                        done.append(order.order_id)
                    else:
                        pipe.set(self.order_key(order.order_id), order.model_dump_json())
                if done:
                    pipe.srem(self.active_key, *done)
                await pipe.execute()

        await _guard(op)
        return [None] * len(writes)

    async def forget(self, order_id: str) -> None:
        """Undo :meth:`accept` (intake compensation)."""

        async def op() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(self.order_key(order_id))
                pipe.srem(self.active_key, order_id)
                pipe.zrem(self.queue_key, order_id)
                await pipe.execute()

        await _guard(op)

    async def get(self, order_id: str) -> Order | None:
        raw = await _guard(lambda: self.client.get(self.order_key(order_id)))
        return Order.model_validate_json(raw) if raw else None

    async def enqueue(self, order_id: str, band: Band, at_ms: float) -> None:
        """Queue an id in ``band`` (kept at its place if already queued)."""
        await _guard(lambda: self.client.zadd(self.queue_key, {order_id: band * _BAND_SPAN + at_ms}, nx=True))

    async def pop(self, timeout_s: float) -> tuple[str, Band] | None:
        """Block up to ``timeout_s`` for the next queued id and its band."""
        items = await self.pop_many(1, timeout_s)
        return items[0] if items else None

    async def pop_many(self, count: int, timeout_s: float) -> list[tuple[str, Band]]:
        """Up to ``count`` queued ids (in queue order) with their bands; block up to ``timeout_s``
        only when the queue is empty. Under load one round trip hands out many orders."""
        found: list[Any] = list(await _guard(lambda: self.client.zpopmin(self.queue_key, count)))
        if not found:
            item = await _guard(lambda: self.client.bzpopmin(self.queue_key, timeout=timeout_s))
            found = [(item[1], item[2])] if item else []
        return [(_text(member), Band(min(int(float(score) // _BAND_SPAN), Band.TRIGGERED))) for member, score in found]

    async def add_sim_pair(self, base: str, quote: str) -> None:
        await _guard(lambda: self.client.sadd(self.sim_pairs_key, f"{base}/{quote}", f"{quote}/{base}"))

    async def sim_pairs(self) -> frozenset[tuple[str, str]]:
        members = await _guard(lambda: self.client.smembers(self.sim_pairs_key))
        pairs = (m.decode() if isinstance(m, bytes) else str(m) for m in members)
        return frozenset((a, b) for a, _, b in (p.partition("/") for p in pairs))

    async def active_ids(self) -> set[str]:
        members = await _guard(lambda: self.client.smembers(self.active_key))
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}

    async def queued_ids(self) -> set[str]:
        members = await _guard(lambda: self.client.zrange(self.queue_key, 0, -1))
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}

    async def queued(self) -> int:
        return int(await _guard(lambda: self.client.zcard(self.queue_key)))

    async def active_count(self) -> int:
        return int(await _guard(lambda: self.client.scard(self.active_key)))

    async def mark_epoch(self, epoch: str) -> None:
        await _guard(lambda: self.client.set(self.epoch_key, epoch))

    async def epoch(self) -> str | None:
        raw = await _guard(lambda: self.client.get(self.epoch_key))
        return raw.decode() if isinstance(raw, bytes) else raw


def _text(member: bytes | str) -> str:
    return member.decode() if isinstance(member, bytes) else str(member)
