"""Admission in Redis: one Lua script per submission, so every limit holds across ingress replicas and nodes.

Keys (under the engine's prefix):

* ``acct:rate:<account>``     the account's token bucket (``tokens``, ``ts`` in ms); expires when idle
* ``acct:open:<account>``     the account's open orders: id -> ``"<reserved ms>:<USD value>"`` (reserved here,
  kept by :class:`engine.adapters.redis_store.RedisOrders` at accept, requeue and finish), and
  ``acct:open_usd:<account>`` their USD total: admission reads two values, whatever the account holds
* ``acct:revoked``            ids of revoked keys (a submission with one is refused even before this replica
  hears of the revocation)
* ``acct:streams:<account>``  the account's open WebSockets: stream id -> expiry (ms); replicas refresh theirs
* ``trading:state``           the trading state's mirror (:mod:`engine.adapters.trading_store`)

Concurrent submissions' scripts go to Redis in one pipeline (:class:`engine.batching.Coalescer`). Time is
Redis's own (``TIME``), so replicas' clocks do not matter. An order reserved here but never
stored (the replica died in between) is not in the ``active`` set: once it is older than a grace period
it is pruned when the account next reaches a cap.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.accounts import AccountLimits
from engine.adapters.redis_store import OPEN_REMOVE, account_open_key, account_open_usd_key
from engine.admission import Admission, Verdict
from engine.batching import Coalescer
from engine.errors import StoreUnavailable
from engine.trading_state import ScopeState

T = TypeVar("T")

PRUNE_GRACE_MS = 30_000
"""A reservation this old whose order is not active is a leftover (its replica died before storing it)."""
STREAM_TTL_MS = 90_000
"""A stream a replica stopped refreshing (it died) stops counting after this long."""

_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '' and redis.call('SISMEMBER', KEYS[6], ARGV[1]) == 1 then return {1} end
if redis.call('HEXISTS', KEYS[1], '_init') == 0 then return {2} end
local halt = redis.call('HGET', KEYS[1], '*')
if not halt then halt = redis.call('HGET', KEYS[1], ARGV[2]) end
if halt then return {3, halt} end
local rate, burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local bucket = redis.call('HMGET', KEYS[2], 'tokens', 'ts')
local tokens, ts = tonumber(bucket[1]), tonumber(bucket[2])
if tokens == nil or ts == nil then tokens, ts = burst, now end
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000); ts = now end
local ttl = math.ceil(burst / rate * 1000) + 1000
if tokens < 1 then
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'ts', tostring(ts))
  redis.call('PEXPIRE', KEYS[2], ttl)
  return {4, tostring(tokens)}
end
tokens = tokens - 1
redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[2], ttl)
local queued = redis.call('ZCARD', KEYS[4])
if queued >= tonumber(ARGV[7]) then return {5, tostring(tokens), queued} end
local function tally()
  return redis.call('HLEN', KEYS[3]), tonumber(redis.call('GET', KEYS[8]) or '0') or 0
end
local count, usd = tally()
local max_open, max_usd, order_usd = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[9])
if (count >= max_open or usd + order_usd > max_usd) and redis.call('SET', KEYS[7], '1', 'NX', 'PX', 1000) then
  -- at a cap: drop reservations whose order never arrived (at most once a second per account)
  local entries = redis.call('HGETALL', KEYS[3])
  local grace = now - tonumber(ARGV[10])
  for i = 1, #entries, 2 do
    local reserved = tonumber(string.match(entries[i + 1], '^([^:]*)')) or 0
    if reserved < grace and redis.call('SISMEMBER', KEYS[5], entries[i]) == 0 then
      redis.call('HDEL', KEYS[3], entries[i])
      redis.call('INCRBYFLOAT', KEYS[8], -(tonumber(string.match(entries[i + 1], ':(.*)$')) or 0))
    end
  end
  if redis.call('HLEN', KEYS[3]) == 0 then redis.call('DEL', KEYS[8]) end
  count, usd = tally()
end
if count >= max_open then return {6, tostring(tokens), count, tostring(usd)} end
if usd + order_usd > max_usd then return {7, tostring(tokens), count, tostring(usd)} end
redis.call('HSET', KEYS[3], ARGV[8], now .. ':' .. ARGV[9])
redis.call('INCRBYFLOAT', KEYS[8], ARGV[9])
return {0, tostring(tokens), count + 1, tostring(usd + order_usd)}
"""

_OPEN_STREAM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local open = redis.call('ZCARD', KEYS[1])
if open >= tonumber(ARGV[2]) then return {0, open} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, open + 1}
"""

_REFRESH_STREAMS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1]))
end
return #KEYS
"""


async def guarded(op: Callable[[], Awaitable[T]]) -> T:
    try:
        return await op()
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise StoreUnavailable("redis", f"{type(exc).__name__}: {exc}") from exc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AdmissionStore:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.state_key = f"{prefix}trading:state"
        self.revoked_key = f"{prefix}acct:revoked"
        self.queue_key = f"{prefix}queue"
        self.active_key = f"{prefix}active"
        self._admit = client.register_script(_ADMIT)
        self._open_stream = client.register_script(_OPEN_STREAM)
        self._refresh = client.register_script(_REFRESH_STREAMS)
        self._remove = client.register_script(OPEN_REMOVE)
        self._admits: Coalescer[tuple[list[str], list[str]], Any] = Coalescer(self._admit_many, max_batch=128, max_in_flight=4)

    def rate_key(self, account: str) -> str:
        return f"{self.prefix}acct:rate:{account}"

    def open_keys(self, account: str) -> list[str]:
        return [account_open_key(self.prefix, account), account_open_usd_key(self.prefix, account)]

    def streams_key(self, account: str) -> str:
        return f"{self.prefix}acct:streams:{account}"

    async def admit(
        self,
        *,
        account: str,
        key_id: str,
        scope: str,
        limits: AccountLimits,
        max_queued: int,
        order_id: str,
        order_usd: float,
    ) -> Admission:
        """The one atomic check of a submission; when admitted, the order is reserved among the
        account's open orders (release it with :meth:`release` if it is not stored after all)."""
        keys = [
            self.state_key,
            self.rate_key(account),
            account_open_key(self.prefix, account),
            self.queue_key,
            self.active_key,
            self.revoked_key,
            f"{self.prefix}acct:pruned:{account}",
            account_open_usd_key(self.prefix, account),
        ]
        args = [
            key_id,
            scope,
            repr(limits.rate_per_second),
            str(limits.rate_burst),
            str(limits.max_open_orders),
            repr(limits.max_open_notional_usd),
            str(max_queued),
            order_id,
            repr(order_usd),
            str(PRUNE_GRACE_MS),
        ]
        answer: list[Any] = await guarded(lambda: self._admits.submit((keys, args)))
        verdict = Verdict(int(answer[0]))
        burst, rate = limits.rate_burst, limits.rate_per_second
        if verdict in (Verdict.REVOKED, Verdict.STATE_UNKNOWN):
            return Admission(verdict, burst, rate, tokens=0.0)
        if verdict is Verdict.HALTED:
            return Admission(verdict, burst, rate, tokens=0.0, halt=ScopeState.from_json(json.loads(_text(answer[1]))))
        tokens = float(_text(answer[1]))
        if verdict is Verdict.RATE_LIMITED:
            return Admission(verdict, burst, rate, tokens)
        if verdict is Verdict.QUEUE_FULL:
            return Admission(verdict, burst, rate, tokens, queued=int(answer[2]))
        return Admission(verdict, burst, rate, tokens, open_orders=int(answer[2]), open_usd=float(_text(answer[3])))

    async def _admit_many(self, calls: list[tuple[list[str], list[str]]]) -> list[Any]:
        """Concurrent submissions' scripts in one pipeline (each script is atomic on its own, as before);
        a script Redis does not hold (it restarted) is loaded and those calls sent again."""
        if len(calls) == 1:
            keys, args = calls[0]
            return [await self._admit(keys=keys, args=args)]
        results = await self._pipelined(calls)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            self._admit.sha = await self.client.script_load(_ADMIT)
            for i, result in zip(missing, await self._pipelined([calls[i] for i in missing]), strict=True):
                results[i] = result
        return results

    async def _pipelined(self, calls: list[tuple[list[str], list[str]]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(self._admit.sha, len(keys), *keys, *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        return results

    async def release(self, account: str, order_id: str) -> None:
        """Undo a reservation whose order was not stored (refused, or an idempotent replay)."""
        await guarded(lambda: self._remove(keys=self.open_keys(account), args=[order_id]))

    async def revoke(self, key_id: str) -> None:
        await guarded(lambda: self.client.sadd(self.revoked_key, key_id))

    async def open_orders(self, account: str) -> tuple[int, float]:
        """How many orders the account holds open and their USD value (reservations included)."""
        open_key, usd_key = self.open_keys(account)
        count, usd = await guarded(lambda: asyncio.gather(self.client.hlen(open_key), self.client.get(usd_key)))
        return int(count), float(_text(usd)) if usd is not None else 0.0

    # -- streams ------------------------------------------------------------------------------

    async def open_stream(self, account: str, max_streams: int) -> str | None:
        """Count a new stream for the account; its id, or None if the account has ``max_streams`` open."""
        stream_id = secrets.token_hex(8)
        answer: list[Any] = await guarded(
            lambda: self._open_stream(keys=[self.streams_key(account)], args=[stream_id, str(max_streams), str(STREAM_TTL_MS)])
        )
        return stream_id if int(answer[0]) == 1 else None

    async def close_stream(self, account: str, stream_id: str) -> None:
        await guarded(lambda: self.client.zrem(self.streams_key(account), stream_id))

    async def refresh_streams(self, streams: list[tuple[str, str]]) -> None:
        """Keep this replica's streams ``(account, stream id)`` counted for another :data:`STREAM_TTL_MS`."""
        if not streams:
            return
        keys = [self.streams_key(account) for account, _ in streams]
        args = [str(STREAM_TTL_MS), *(stream_id for _, stream_id in streams)]
        await guarded(lambda: self._refresh(keys=keys, args=args))
