"""The trading state in the stores: PostgreSQL keeps every change (who, when, why) and is the truth;
Redis mirrors the halted scopes for the hot paths (intake's admission script, the dispatcher's pop, the
watcher, the executors), and holds the orders of a halted pair out of the queue ("parked").

Redis keys (under the engine's prefix):

* ``trading:state``           hash: ``_init`` (the mirror was loaded), ``_version`` (the last change's id),
  and one field per halted scope (``*`` or a pair such as ``SOL/USDC``) holding that change as JSON
* ``trading:parked:<pair>``   sorted set: queued orders of a halted pair, with their queue scores
* ``trading:parked_pairs``    the pairs that have parked orders

A Redis that restarted empty has no ``_init``: every reader then fails closed (nothing is admitted or
dispatched) until :meth:`TradingStateStore.restore_mirror` loads the state from PostgreSQL again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from engine.adapters.admission_store import guarded
from engine.adapters.postgres import guard
from engine.adapters.redis_store import _BAND_SPAN, RedisOrders
from engine.bands import Band
from engine.errors import StoreUnavailable
from engine.models import Order
from engine.trading_state import GLOBAL, ScopeState, TradingState, TradingStates, pair_scope

log = logging.getLogger("engine.trading_store")

HALTED_POLL_S = 0.5
"""While the whole engine is halted, the dispatcher asks again this often (no busy loop)."""

_REPLACE_MIRROR = """
local current = tonumber(redis.call('HGET', KEYS[1], '_version') or '-1')
if redis.call('HEXISTS', KEYS[1], '_init') == 1 and current > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '_init', '1', '_version', ARGV[1])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

_POP = """
if redis.call('HEXISTS', KEYS[2], '_init') == 0 then return {-1} end
local count = tonumber(ARGV[1])
if redis.call('HEXISTS', KEYS[2], '*') == 1 then
  local control = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3], 'WITHSCORES', 'LIMIT', 0, count)
  for i = 1, #control, 2 do redis.call('ZREM', KEYS[1], control[i]) end
  return {1, #control / 2, unpack(control)}
end
local popped = redis.call('ZPOPMIN', KEYS[1], count)
if redis.call('HLEN', KEYS[2]) <= 2 then return {0, #popped / 2, unpack(popped)} end
local out = {}
for i = 1, #popped, 2 do
  local id, score = popped[i], popped[i + 1]
  local parked = false
  if tonumber(score) >= tonumber(ARGV[3]) then
    local raw = redis.call('GET', ARGV[2] .. 'order:' .. id)
    if raw then
      local ok, order = pcall(cjson.decode, raw)
      if ok and type(order) == 'table' and type(order.token_in) == 'string' and type(order.token_out) == 'string' then
        local a, b = order.token_in, order.token_out
        if b < a then a, b = b, a end
        local scope = a .. '/' .. b
        if redis.call('HEXISTS', KEYS[2], scope) == 1 then
          redis.call('ZADD', ARGV[2] .. 'trading:parked:' .. scope, score, id)
          redis.call('SADD', KEYS[3], scope)
          parked = true
        end
      end
    end
  end
  if not parked then out[#out + 1] = id; out[#out + 1] = score end
end
return {2, #popped / 2, unpack(out)}
"""

_UNPARK = """
local moved = 0
for _, scope in ipairs(ARGV) do
  local parked = KEYS[2] .. scope
  if redis.call('HEXISTS', KEYS[3], scope) == 0 and redis.call('EXISTS', parked) == 1 then
    moved = moved + redis.call('ZCARD', parked)
    redis.call('ZUNIONSTORE', KEYS[1], 2, KEYS[1], parked, 'AGGREGATE', 'MIN')
    redis.call('DEL', parked)
    redis.call('SREM', KEYS[4], scope)
  end
end
return moved
"""


@dataclass(frozen=True, slots=True)
class Change:
    """One recorded change of the trading state."""

    id: int
    state: ScopeState


class TradingStateStore:
    def __init__(self, pool: asyncpg.Pool, client: aioredis.Redis, prefix: str) -> None:
        self.pool = pool
        self.client = client
        self.prefix = prefix
        self.state_key = f"{prefix}trading:state"
        self.parked_prefix = f"{prefix}trading:parked:"
        self.parked_pairs_key = f"{prefix}trading:parked_pairs"
        self.queue_key = f"{prefix}queue"
        self._replace = client.register_script(_REPLACE_MIRROR)
        self._pop = client.register_script(_POP)
        self._unpark = client.register_script(_UNPARK)
        self._cached: tuple[float, TradingStates] | None = None

    # -- PostgreSQL: the truth ----------------------------------------------------------------

    async def current(self) -> tuple[int, TradingStates, list[ScopeState]]:
        """The last change's id, the halted scopes, and the latest state of every scope ever changed."""

        async def op() -> tuple[int, list[asyncpg.Record]]:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT DISTINCT ON (scope) id, scope, state, reason, changed_by, extract(epoch from changed_at) * 1000 AS at "
                    "FROM trading_state_changes ORDER BY scope, id DESC"
                )
                version = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM trading_state_changes"))
                return version, rows

        version, rows = await guard(op)
        latest = [_state(row) for row in rows]
        return version, TradingStates.of(latest), latest

    async def history(self, limit: int = 50) -> list[Change]:
        async def op() -> list[asyncpg.Record]:
            async with self.pool.acquire() as conn:
                rows: list[asyncpg.Record] = await conn.fetch(
                    "SELECT id, scope, state, reason, changed_by, extract(epoch from changed_at) * 1000 AS at "
                    "FROM trading_state_changes ORDER BY id DESC LIMIT $1",
                    limit,
                )
                return rows

        return [Change(int(row["id"]), _state(row)) for row in await guard(op)]

    async def change(self, scope: str, state: TradingState, reason: str, changed_by: str) -> ScopeState:
        """Record a change (PostgreSQL first: it survives a restart), then bring the Redis mirror up to
        date; a resumed pair's parked orders go back to the queue in their places."""

        async def op() -> asyncpg.Record:
            async with self.pool.acquire() as conn:
                row: asyncpg.Record = await conn.fetchrow(
                    "INSERT INTO trading_state_changes (scope, state, reason, changed_by, changed_at) VALUES ($1, $2, $3, $4, now()) "
                    "RETURNING id, scope, state, reason, changed_by, extract(epoch from changed_at) * 1000 AS at",
                    scope,
                    state.value,
                    reason,
                    changed_by,
                )
                return row

        recorded = _state(await guard(op))
        log.warning(
            "trading state changed",
            extra={"scope": scope, "state": state.value, "reason": reason, "changed_by": changed_by},
        )
        await self.restore_mirror()
        if state is TradingState.ACTIVE:
            await self.unpark()
        return recorded

    # -- Redis: the mirror --------------------------------------------------------------------

    async def restore_mirror(self) -> TradingStates:
        """Load the state from PostgreSQL into Redis (unless Redis already holds a newer one)."""
        version, states, _ = await self.current()
        args: list[str] = [str(version)]
        for scope, halted in states.halted.items():
            args += [scope, json.dumps(halted.to_json())]
        await guarded(lambda: self._replace(keys=[self.state_key], args=args))
        self._cached = None
        return states

    async def states(self, max_age_s: float = 0.0) -> TradingStates:
        """The halted scopes from the mirror (restored from PostgreSQL if Redis lost it); a copy read
        less than ``max_age_s`` ago is reused."""
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < max_age_s:
            return self._cached[1]
        raw: dict[Any, Any] = await guarded(lambda: self.client.hgetall(self.state_key))
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if "_init" not in fields:
            states = await self.restore_mirror()
        else:
            states = TradingStates.of(ScopeState.from_json(json.loads(v)) for k, v in fields.items() if not k.startswith("_"))
        self._cached = (now, states)
        return states

    async def unpark(self, scopes: Sequence[str] | None = None) -> int:
        """Put parked orders of pairs no longer halted back in the queue; how many."""
        if scopes is None:
            members = await guarded(lambda: self.client.smembers(self.parked_pairs_key))
            scopes = [_text(m) for m in members]
        if not scopes:
            return 0
        keys = [self.queue_key, self.parked_prefix, self.state_key, self.parked_pairs_key]
        moved = int(await guarded(lambda: self._unpark(keys=keys, args=list(scopes))))
        if moved:
            log.info("resumed parked orders", extra={"orders": moved, "pairs": list(scopes)})
        return moved

    async def parked_ids(self) -> set[str]:
        members = await guarded(lambda: self.client.smembers(self.parked_pairs_key))
        found: set[str] = set()
        for scope in members:
            key = self.parked_prefix + _text(scope)
            ids: list[Any] = await guarded(lambda key=key: self.client.zrange(key, 0, -1))  # type: ignore[misc]
            found |= {_text(m) for m in ids}
        return found


class DispatchGate:
    """What the dispatcher pops, within the trading state (one Lua call per round, as the plain pop was).

    Whole engine halted: only cancels and expiries (the CONTROL band) leave the queue; the rest stays
    queued in its place. A pair halted: its orders are parked as they come off the queue, and go back
    in their places when it resumes. Redis without a mirror: nothing is popped until it is restored.
    """

    def __init__(self, store: TradingStateStore, orders: RedisOrders) -> None:
        self.store = store
        self.orders = orders

    async def pop(self, count: int, timeout_s: float) -> list[tuple[str, Band]]:
        items, popped = await self._pop(count)
        if items or popped:
            return items
        # an empty queue: block for the next order as before, then run it through the script
        item = await guarded(lambda: self.orders.client.bzpopmin(self.orders.queue_key, timeout=timeout_s))
        if not item:
            return []
        member, score = _text(item[1]), float(item[2])
        await guarded(lambda: self.orders.client.zadd(self.orders.queue_key, {member: score}, nx=True))
        items, _ = await self._pop(count)
        return items

    async def _pop(self, count: int) -> tuple[list[tuple[str, Band]], int]:
        keys = [self.orders.queue_key, self.store.state_key, self.store.parked_pairs_key]
        args = [str(count), self.orders.prefix, repr(float(Band.MARKET) * _BAND_SPAN)]
        answer: list[Any] = await guarded(lambda: self.store._pop(keys=keys, args=args))
        code = int(answer[0])
        if code == -1:
            log.warning("trading state missing from redis; restoring it from postgres before dispatching")
            try:
                await self.store.restore_mirror()
            except StoreUnavailable as exc:
                log.warning("cannot restore the trading state", extra={"error": str(exc)})
                await asyncio.sleep(HALTED_POLL_S)
            return [], 1
        popped = int(answer[1])
        flat = answer[2:]
        items = [(_text(flat[i]), Band(min(int(float(flat[i + 1]) // _BAND_SPAN), Band.TRIGGERED))) for i in range(0, len(flat), 2)]
        if code == 1 and not items:
            await asyncio.sleep(HALTED_POLL_S)  # halted: ask again in a while
            return [], 1
        return items, popped

    async def blocked(self, order_id: str) -> bool:
        """Should this order, about to run, wait instead (its scope is halted)? One cached read of the
        state; the order's hot copy is read only while something is halted."""
        return await self._blocking(order_id) is not None

    async def hold(self, order_id: str) -> bool:
        """If the order's scope is halted, put it back in the queue (where the next pop keeps or parks it)
        instead of running it; True if held. An order whose hot copy is missing is left to the sweep."""
        found = await self._blocking(order_id)
        if found is None:
            return False
        if not isinstance(found, bool):
            await self.orders.requeue([found])
        log.info("order held: its trading scope is halted", extra={"order_id": order_id})
        return True

    async def _blocking(self, order_id: str) -> Order | bool | None:
        """None if the order may run; else the order (its hot copy), or True if it was not found."""
        states = await self.store.states(max_age_s=0.1)
        if not states.halted:
            return None
        order = await self.orders.get(order_id)
        if order is None:
            return True if states.globally is not None else None
        return order if states.blocks(order.token_in, order.token_out) else None


def _state(row: asyncpg.Record) -> ScopeState:
    return ScopeState(row["scope"], TradingState(row["state"]), row["reason"], row["changed_by"], float(row["at"]))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["GLOBAL", "Change", "DispatchGate", "TradingStateStore", "pair_scope"]
