"""Accounts, admission and the trading state against the real PostgreSQL and Redis (no Ray)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest
import redis.asyncio as aioredis

from engine.accounts import AccountLimits, Scope, new_key
from engine.adapters import admission_store
from engine.adapters.accounts_store import KeyStore, LimitStore
from engine.adapters.admission_store import AdmissionStore
from engine.adapters.control import KEY_REVOKED, ControlChannel, TrustedCache
from engine.adapters.postgres import PostgresJournal
from engine.adapters.redis_store import RedisOrders
from engine.adapters.trading_store import DispatchGate, TradingStateStore
from engine.admission import Verdict
from engine.bands import Band
from engine.errors import DuplicateRequest
from engine.intake import new_order
from engine.models import OrderRequest, OrderStatus, OrderType
from engine.trading_state import GLOBAL, TradingState, pair_scope
from tests.conftest import TestStores

LIMITS = AccountLimits(
    rate_per_second=1.0,
    rate_burst=3,
    max_open_orders=1000,
    max_open_notional_usd=1e12,
    max_order_notional_usd=1e12,
    max_depth_share=1.0,
    max_streams=2,
)


@pytest.fixture
async def client(clean: TestStores) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(clean.redis_url)
    yield redis
    await redis.aclose()


@pytest.fixture
async def accounts_tables(pg_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    await pg_pool.execute("TRUNCATE api_keys, account_limits, account_limit_changes, trading_state_changes")
    yield pg_pool
    # a halt left behind would hold every later test's orders (their dispatchers load it from PostgreSQL)
    await pg_pool.execute("TRUNCATE api_keys, account_limits, account_limit_changes, trading_state_changes")


@pytest.fixture
async def trading(accounts_tables: asyncpg.Pool, client: aioredis.Redis, clean: TestStores) -> TradingStateStore:
    store = TradingStateStore(accounts_tables, client, clean.redis_prefix)
    await store.restore_mirror()
    return store


@pytest.fixture
def admission(client: aioredis.Redis, clean: TestStores) -> AdmissionStore:
    return AdmissionStore(client, clean.redis_prefix)


def _order(account: str = "local", amount: float = 1.0, at: float | None = None, pair: tuple[str, str] = ("SOL", "USDC")):
    request = OrderRequest(token_in=pair[0], token_out=pair[1], amount=amount, order_type=OrderType.MARKET)
    return new_order(request, at or time.time() * 1000, account=account, notional_usd=amount * 150)


# --------------------------------------------------------------------------- orders and idempotency


async def test_idempotency_keys_belong_to_their_account_and_expire_after_24_hours(journal: PostgresJournal, pg_pool: asyncpg.Pool) -> None:
    alice, alice_first = _order("alice")
    bob, bob_first = _order("bob")
    await journal.insert_order(alice, alice_first, "same-key", "h1")
    await journal.insert_order(bob, bob_first, "same-key", "h1")  # another account: another key
    again, again_first = _order("alice")
    with pytest.raises(DuplicateRequest) as held:
        await journal.insert_order(again, again_first, "same-key", "h1")
    assert held.value.order_id == alice.order_id
    # a day and a bit later the key is free again: a new order, and the old one keeps its history
    await pg_pool.execute("UPDATE orders SET submitted_at = submitted_at - interval '25 hours' WHERE order_id = $1", alice.order_id)
    later, later_first = _order("alice")
    await journal.insert_order(later, later_first, "same-key", "h1")
    rows = await pg_pool.fetch("SELECT order_id, account, idempotency_key FROM orders ORDER BY submitted_at")
    assert {(r["order_id"], r["account"], r["idempotency_key"]) for r in rows} == {
        (alice.order_id, "alice", None),
        (bob.order_id, "bob", "same-key"),
        (later.order_id, "alice", "same-key"),
    }
    loaded = await journal.get(later.order_id)
    assert loaded is not None and loaded.account == "alice" and loaded.notional_usd == 150.0


async def test_list_orders_filters_by_account(journal: PostgresJournal) -> None:
    mine = [_order("alice", at=1_764_000_000_000.0 + i) for i in range(3)]
    theirs = _order("bob", at=1_764_000_000_100.0)
    for order, first in [*mine, theirs]:
        await journal.insert_order(order, first)
    listed = await journal.list_orders(account="alice")
    assert [o.order_id for o in listed] == [o.order_id for o, _ in reversed(mine)]
    assert {o.account for o in await journal.list_orders()} == {"alice", "bob"}


# --------------------------------------------------------------------------- keys and limits


async def test_keys_are_stored_hashed_listed_and_revoked(accounts_tables: asyncpg.Pool) -> None:
    keys = KeyStore(accounts_tables)
    record, plaintext = new_key("alice", frozenset({Scope.TRADE}), 1_764_000_000_000.0, "admin")
    await keys.create(record)
    stored = await keys.get(record.key_id)
    assert stored is not None and stored.verify(plaintext.split("_", 2)[2]) and stored.account == "alice"
    raw = await accounts_tables.fetchval("SELECT secret_hash FROM api_keys WHERE key_id = $1", record.key_id)
    assert plaintext.split("_", 2)[2] not in raw and len(raw) == 64
    revoked = await keys.revoke(record.key_id, "admin")
    assert revoked is not None and not revoked.active and not revoked.verify(plaintext.split("_", 2)[2])
    again = await keys.revoke(record.key_id, "someone-else")
    assert again is not None and again.revoked_at == revoked.revoked_at
    assert await keys.revoke("0" * 16, "admin") is None
    assert [k.key_id for k in await keys.list("alice")] == [record.key_id] and await keys.list("bob") == []


async def test_limit_overrides_replace_and_keep_a_history(accounts_tables: asyncpg.Pool) -> None:
    limits = LimitStore(accounts_tables)
    assert await limits.get("alice") == {}
    await limits.put("alice", {"rate_per_second": 2.0}, "admin")
    await limits.put("alice", {"max_open_orders": 5}, "admin")
    assert await limits.get("alice") == {"max_open_orders": 5}
    await limits.put("alice", {}, "ops")
    assert await limits.get("alice") == {}
    history = await accounts_tables.fetch("SELECT limits, changed_by FROM account_limit_changes WHERE account = 'alice' ORDER BY id")
    assert [(dict(r["limits"]), r["changed_by"]) for r in history] == [
        ({"rate_per_second": 2.0}, "admin"),
        ({"max_open_orders": 5}, "admin"),
        ({}, "ops"),
    ]


# --------------------------------------------------------------------------- admission


async def _admit(store: AdmissionStore, account: str = "alice", limits: AccountLimits = LIMITS, usd: float = 1.0, **kw: object):
    order_id = str(kw.pop("order_id", f"order_{time.time_ns()}"))
    return await store.admit(
        account=account,
        key_id=str(kw.pop("key_id", "k1")),
        scope=str(kw.pop("scope", pair_scope("SOL", "USDC"))),
        limits=limits,
        max_queued=int(kw.pop("max_queued", 1000)),  # type: ignore[call-overload]
        order_id=order_id,
        order_usd=usd,
    )


async def test_the_token_bucket_admits_a_burst_then_the_rate(trading: TradingStateStore, admission: AdmissionStore) -> None:
    verdicts = [await _admit(admission) for _ in range(3)]
    started = time.monotonic()  # before Redis times the fourth call
    verdicts.append(await _admit(admission))
    assert [v.verdict for v in verdicts] == [Verdict.ADMITTED] * 3 + [Verdict.RATE_LIMITED]
    assert verdicts[0].rate_headers()["RateLimit-Remaining"] == "2"
    assert verdicts[3].rate_headers()["RateLimit-Remaining"] == "0" and verdicts[3].tokens < 1
    other = await _admit(admission, account="bob")  # another account has its own bucket
    assert other.admitted
    deadline = started + 30
    while not (await _admit(admission)).admitted:  # a refused call takes no token
        assert time.monotonic() < deadline, "no token came back in 30 s"
        await asyncio.sleep(0.02)
    assert time.monotonic() - started >= (1 - verdicts[3].tokens) / LIMITS.rate_per_second - 0.05  # 1 token per second
    assert (await _admit(admission)).verdict is Verdict.RATE_LIMITED  # the token just taken was the only one


async def test_concurrent_admissions_share_a_pipeline_and_each_gets_its_own_verdict(
    trading: TradingStateStore, admission: AdmissionStore, client: aioredis.Redis
) -> None:
    limits = replace(LIMITS, rate_burst=5)
    admission._admit.sha = "0" * 40  # as if Redis had lost the script (restarted): it is loaded again
    verdicts = await asyncio.gather(*(_admit(admission, limits=limits, order_id=f"order_{i}") for i in range(8)))
    assert sorted(v.verdict for v in verdicts) == [Verdict.ADMITTED] * 5 + [Verdict.RATE_LIMITED] * 3
    assert await admission.open_orders("alice") == (5, 5.0)
    assert admission._admits.flushes < 8  # they went together
    again = await asyncio.gather(*(_admit(admission, limits=limits, account=f"acct{i}") for i in range(4)))
    assert all(v.admitted for v in again)


async def test_open_orders_cap_and_notional_hold_and_free_up_when_orders_finish(
    trading: TradingStateStore, admission: AdmissionStore, redis_orders: RedisOrders
) -> None:
    limits = replace(LIMITS, rate_burst=100, max_open_orders=2, max_open_notional_usd=1000.0)
    orders = [_order("alice")[0] for _ in range(3)]
    first = await _admit(admission, limits=limits, usd=300.0, order_id=orders[0].order_id)
    second = await _admit(admission, limits=limits, usd=300.0, order_id=orders[1].order_id)
    third = await _admit(admission, limits=limits, usd=300.0, order_id=orders[2].order_id)
    assert (first.verdict, second.verdict, third.verdict) == (Verdict.ADMITTED, Verdict.ADMITTED, Verdict.TOO_MANY_OPEN)
    assert third.open_orders == 2 and third.open_usd == 600.0
    await redis_orders.accept_many(orders[:2])  # stored: accept keeps their reservations
    done = orders[0].model_copy(update={"status": OrderStatus.CONFIRMED})
    await redis_orders.finish(done)  # finishing frees the slot and its notional
    assert (await _admit(admission, limits=limits, usd=600.0)).admitted
    refused = await _admit(admission, limits=limits, usd=200.0)
    assert refused.verdict is Verdict.TOO_MANY_OPEN
    wide = replace(limits, max_open_orders=10)
    notional = await _admit(admission, limits=wide, usd=200.0)
    assert notional.verdict is Verdict.OPEN_NOTIONAL and notional.open_usd == 900.0
    await admission.release("alice", orders[1].order_id)
    assert await admission.open_orders("alice") == (1, 600.0)


async def test_a_reservation_whose_order_never_arrived_is_pruned(
    trading: TradingStateStore, admission: AdmissionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = replace(LIMITS, rate_burst=100, max_open_orders=1)
    assert (await _admit(admission, limits=limits)).admitted  # reserved; its replica "died" before storing it
    assert (await _admit(admission, limits=limits)).verdict is Verdict.TOO_MANY_OPEN  # within the grace period
    monkeypatch.setattr(admission_store, "PRUNE_GRACE_MS", 0)
    await asyncio.sleep(1.05)  # pruning runs at most once a second per account
    assert (await _admit(admission, limits=limits)).admitted


async def test_queue_cap_revoked_keys_halts_and_a_lost_mirror(
    trading: TradingStateStore, admission: AdmissionStore, redis_orders: RedisOrders, client: aioredis.Redis, clean: TestStores
) -> None:
    limits = replace(LIMITS, rate_burst=100)
    await redis_orders.accept_many([_order()[0] for _ in range(3)])
    full = await _admit(admission, limits=limits, max_queued=3)
    assert full.verdict is Verdict.QUEUE_FULL and full.queued == 3
    await admission.revoke("gone")
    assert (await _admit(admission, limits=limits, key_id="gone")).verdict is Verdict.REVOKED
    await trading.change(pair_scope("SOL", "USDC"), TradingState.HALTED, "pair incident", "ops")
    halted = await _admit(admission, limits=limits)
    assert halted.verdict is Verdict.HALTED and halted.halt is not None and halted.halt.reason == "pair incident"
    assert (await _admit(admission, limits=limits, scope=pair_scope("JUP", "USDC"))).admitted
    await client.delete(f"{clean.redis_prefix}trading:state")  # Redis restarted empty
    assert (await _admit(admission, limits=limits)).verdict is Verdict.STATE_UNKNOWN
    await trading.restore_mirror()
    assert (await _admit(admission, limits=limits)).verdict is Verdict.HALTED  # the halt survived in PostgreSQL


async def test_streams_are_counted_per_account_and_expire(admission: AdmissionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    first = await admission.open_stream("alice", 2)
    second = await admission.open_stream("alice", 2)
    assert first and second and await admission.open_stream("alice", 2) is None
    assert await admission.open_stream("bob", 2) is not None
    await admission.close_stream("alice", first)
    assert await admission.open_stream("alice", 2) is not None
    monkeypatch.setattr(admission_store, "STREAM_TTL_MS", 2_000)  # room for a loaded machine between two calls
    started = time.monotonic()
    leaked = await admission.open_stream("carol", 1)
    assert leaked is not None and await admission.open_stream("carol", 1) is None
    deadline = started + 30
    while await admission.open_stream("carol", 1) is None:  # its replica stopped refreshing it
        assert time.monotonic() < deadline, "the unrefreshed stream still counted after 30 s"
        await asyncio.sleep(0.05)
    assert time.monotonic() - started >= 2.0 - 0.05  # counted for its whole TTL, not less


# --------------------------------------------------------------------------- the trading state and dispatch


async def test_a_global_halt_pops_only_cancels_and_expiries(trading: TradingStateStore, redis_orders: RedisOrders) -> None:
    gate = DispatchGate(trading, redis_orders)
    market = [_order(at=1_764_000_000_000.0 + i)[0] for i in range(3)]
    await redis_orders.accept_many(market)
    await redis_orders.enqueue("order_1764000000999_cafecafe", Band.CONTROL, 1_764_000_000_999.0)
    await trading.change(GLOBAL, TradingState.HALTED, "incident 42", "ops")
    started = time.monotonic()
    assert await gate.pop(10, 0.1) == [("order_1764000000999_cafecafe", Band.CONTROL)]
    assert await gate.pop(10, 0.1) == [] and time.monotonic() - started >= 0.4  # waits, no busy loop
    assert await redis_orders.queued() == 3
    await trading.change(GLOBAL, TradingState.ACTIVE, "resolved", "ops")
    assert [i for i, _ in await gate.pop(10, 0.1)] == [o.order_id for o in market]


async def test_a_pair_halt_parks_its_orders_and_resuming_puts_them_back_in_place(
    trading: TradingStateStore, redis_orders: RedisOrders
) -> None:
    gate = DispatchGate(trading, redis_orders)
    sol = [_order(at=1_764_000_000_000.0 + i)[0] for i in (0, 2, 4)]
    jup = [_order(at=1_764_000_000_000.0 + i, pair=("USDC", "JUP"))[0] for i in (1, 3)]
    await redis_orders.accept_many([*sol, *jup])
    await trading.change(pair_scope("USDC", "SOL"), TradingState.HALTED, "SOL feed", "ops")
    assert [i for i, _ in await gate.pop(10, 0.1)] == [o.order_id for o in jup]
    assert await redis_orders.queued() == 0 and await trading.parked_ids() == {o.order_id for o in sol}
    later = _order(at=1_764_000_000_010.0, pair=("USDC", "JUP"))[0]
    await redis_orders.accept_many([later])
    await trading.change(pair_scope("SOL", "USDC"), TradingState.ACTIVE, "feed back", "ops")
    assert [i for i, _ in await gate.pop(10, 0.1)] == [*(o.order_id for o in sol), later.order_id]  # in their places
    history = await trading.history()
    assert [(c.state.scope, c.state.state, c.state.changed_by) for c in history] == [
        ("SOL/USDC", TradingState.ACTIVE, "ops"),
        ("SOL/USDC", TradingState.HALTED, "ops"),
    ]


async def test_dispatch_fails_closed_while_the_mirror_is_missing(
    trading: TradingStateStore, redis_orders: RedisOrders, client: aioredis.Redis, clean: TestStores
) -> None:
    gate = DispatchGate(trading, redis_orders)
    await trading.change(GLOBAL, TradingState.HALTED, "halt", "ops")
    await redis_orders.accept_many([_order()[0]])
    await client.delete(f"{clean.redis_prefix}trading:state")
    assert await gate.pop(10, 0.1) == []  # nothing popped while the state is unknown; the mirror is restored
    assert (await trading.states()).globally is not None and await redis_orders.queued() == 1


async def test_the_executor_gate_holds_orders_of_halted_scopes(trading: TradingStateStore, redis_orders: RedisOrders) -> None:
    gate = DispatchGate(trading, redis_orders)
    sol, jup = _order()[0], _order(pair=("JUP", "USDC"))[0]
    await redis_orders.accept_many([sol, jup])
    assert not await gate.blocked(sol.order_id)
    await trading.change(pair_scope("SOL", "USDC"), TradingState.HALTED, "x", "ops")
    await asyncio.sleep(0.15)  # the gate's cached state is at most 0.1 s old
    assert await gate.blocked(sol.order_id) and not await gate.blocked(jup.order_id)


# --------------------------------------------------------------------------- the control channel


async def test_revocations_reach_every_subscriber_and_caches_trust_only_their_generation(client: aioredis.Redis, clean: TestStores) -> None:
    heard: list[tuple[str, str]] = []
    channels = [ControlChannel(client, clean.redis_prefix) for _ in range(2)]
    for channel in channels:
        channel.on_message(lambda kind, value: heard.append((kind, value)))
        channel.start()
        assert await channel.wait_ready(10)
    cache: TrustedCache[str] = TrustedCache(channels[0], ttl_s=60)
    token = cache.token()
    cache.put("k", "v", token)
    assert cache.get("k") == (True, "v")
    stale = cache.token()
    cache.forget("other")  # something changed while a read was in flight: its answer is not cached
    cache.put("late", "v", stale)
    assert cache.get("late") == (False, None)
    assert await channels[0].publish(KEY_REVOKED, "abc") == 2
    deadline = time.monotonic() + 30
    while len(heard) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert heard == [(KEY_REVOKED, "abc")] * 2
    channels[0].generation += 1  # as after a reconnect
    assert cache.get("k") == (False, None)
    for channel in channels:
        await channel.stop()
