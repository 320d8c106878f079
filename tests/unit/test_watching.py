"""decide(): when a waiting LIMIT/SNIPER order fires, from pool snapshots alone."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from engine.clock import ManualClock
from engine.models import Order, OrderStatus, OrderType, VenueName
from engine.watch import Watch
from engine.watching import Verdict, best_output, decide
from venues.simulated import METEORA, RAYDIUM, PoolSnapshot, SimulatedVenue, VenueTiming
from venues.simulated.pools import BinnedPool, ConstantProductPool, Fill, Pool

R, M = RAYDIUM, METEORA
NOW = 1_764_000_000_000.0
AMOUNT = 2.0


def cp_view(price: float = 150.0, base: str = "SOL") -> PoolSnapshot:
    return PoolSnapshot(ConstantProductPool(reserve_x=10_000.0, reserve_y=10_000.0 * price), base)


def limit(limit_price: float, expires_at: float | None = None, amount: float = AMOUNT) -> Watch:
    return Watch("order_1", OrderType.LIMIT, "SOL", "USDC", amount, limit_price=limit_price, expires_at=expires_at)


def sniper(max_price: float | None = None, expires_at: float | None = None, token_in: str = "SOL", token_out: str = "NEW") -> Watch:
    return Watch("order_2", OrderType.SNIPER, token_in, token_out, AMOUNT, max_price=max_price, expires_at=expires_at)


def net_price(views: dict[VenueName, PoolSnapshot | None]) -> float:
    """The best net price (tokenOut per tokenIn) for AMOUNT SOL, as the watcher computes it."""
    return max(v.output("SOL", AMOUNT) for v in views.values() if v is not None) / AMOUNT


# --------------------------------------------------------------------------- LIMIT


@pytest.mark.parametrize(("offset", "verdict"), [(-0.01, Verdict.TRIGGER), (0.0, Verdict.TRIGGER), (0.01, Verdict.WAIT)])
def test_limit_triggers_at_or_above_its_price(offset: float, verdict: Verdict) -> None:
    views: dict[VenueName, PoolSnapshot | None] = {R: cp_view(150.0), M: cp_view(148.0)}
    price = net_price(views)
    assert decide(limit(price + offset), views, NOW) is verdict


def test_limit_uses_the_best_venue_net_of_fees() -> None:
    views: dict[VenueName, PoolSnapshot] = {R: cp_view(150.0), M: cp_view(153.0)}
    best = views[M].output("SOL", AMOUNT) / AMOUNT
    assert best < 153.0  # net of the fee and the impact, not the spot price
    assert decide(limit(best), views, NOW) is Verdict.TRIGGER
    assert decide(limit(best * 1.0001), views, NOW) is Verdict.WAIT
    assert decide(limit(152.9), {R: views[R]}, NOW) is Verdict.WAIT


def test_limit_in_the_other_direction_reads_the_pool_the_other_way() -> None:
    views: dict[VenueName, PoolSnapshot] = {R: cp_view(150.0)}
    watch = Watch("order_3", OrderType.LIMIT, "USDC", "SOL", 300.0, limit_price=1 / 151)
    assert views[R].output("USDC", 300.0) / 300.0 < 1 / 150
    assert decide(watch, views, NOW) is Verdict.TRIGGER
    assert decide(Watch("order_3", OrderType.LIMIT, "USDC", "SOL", 300.0, limit_price=1 / 149), views, NOW) is Verdict.WAIT


@pytest.mark.parametrize("expires_at", [NOW, NOW - 1])
@pytest.mark.parametrize("price", [1.0, 1e6], ids=["would-trigger", "would-wait"])
def test_expiry_is_checked_first(expires_at: float, price: float) -> None:
    views: dict[VenueName, PoolSnapshot | None] = {R: cp_view()}
    assert decide(limit(price, expires_at=expires_at), views, NOW) is Verdict.EXPIRE
    assert decide(sniper(expires_at=expires_at), {}, NOW) is Verdict.EXPIRE


def test_not_yet_expired_is_decided_on_price() -> None:
    views: dict[VenueName, PoolSnapshot | None] = {R: cp_view()}
    assert decide(limit(1.0, expires_at=NOW + 1), views, NOW) is Verdict.TRIGGER
    assert decide(limit(1e6, expires_at=NOW + 1), views, NOW) is Verdict.WAIT


def test_limit_without_any_pool_waits() -> None:
    assert decide(limit(1.0), {R: None, M: None}, NOW) is Verdict.WAIT
    assert decide(limit(1.0), {}, NOW) is Verdict.WAIT


# --------------------------------------------------------------------------- SNIPER


def test_sniper_waits_for_a_pool_then_triggers_when_one_appears() -> None:
    watch = sniper()
    assert decide(watch, {R: None, M: None}, NOW) is Verdict.WAIT
    listed: dict[VenueName, PoolSnapshot | None] = {R: None, M: PoolSnapshot(ConstantProductPool(reserve_x=1e9, reserve_y=1_000.0), "NEW")}
    assert decide(watch, listed, NOW) is Verdict.TRIGGER


@pytest.mark.parametrize(("factor", "verdict"), [(1.01, Verdict.TRIGGER), (1.0, Verdict.TRIGGER), (0.99, Verdict.WAIT)])
def test_sniper_respects_its_price_cap(factor: float, verdict: Verdict) -> None:
    """max_price is tokenIn paid per tokenOut: SOL per NEW, with the fee and impact included."""
    views: dict[VenueName, PoolSnapshot] = {R: PoolSnapshot(ConstantProductPool(reserve_x=1e9, reserve_y=1_000.0), "NEW")}
    out = views[R].output("SOL", AMOUNT)
    paid_per_token = AMOUNT / out
    assert decide(sniper(max_price=paid_per_token * factor), views, NOW) is verdict


async def test_sniper_fires_on_a_pool_listed_at_a_real_venue() -> None:
    clock = ManualClock()
    timing = VenueTiming(quote_latency_s=0.0, swap_latency_s=(0.0, 0.0))
    venues = {name: SimulatedVenue(name, clock, random.Random(1), timing=timing) for name in (R, M)}
    watch = sniper(max_price=1e-4, token_in="SOL", token_out="NEW")
    views = {name: await v.snapshot("SOL", "NEW") for name, v in venues.items()}
    assert views == {R: None, M: None}
    assert decide(watch, views, NOW) is Verdict.WAIT
    venues[M].list_pool("NEW", "SOL", reserve_base=1e9, reserve_quote=1_000.0)  # 1e-6 SOL per NEW
    views = {name: await v.snapshot("SOL", "NEW") for name, v in venues.items()}
    assert views[R] is None and views[M] is not None
    assert decide(watch, views, NOW) is Verdict.TRIGGER
    assert decide(sniper(max_price=1e-7), views, NOW) is Verdict.WAIT


# --------------------------------------------------------------------------- exhaustion


def shallow_binned(price: float = 150.0) -> PoolSnapshot:
    return PoolSnapshot(BinnedPool.uniform(price, 1_000.0, 10.0, 5), "SOL")  # about 3.3 SOL worth of USDC below spot


def test_a_pool_too_shallow_for_the_amount_waits() -> None:
    views: dict[VenueName, PoolSnapshot | None] = {M: shallow_binned()}
    assert best_output(limit(1.0, amount=50.0), views) == float("-inf")
    assert decide(limit(1.0, amount=50.0), views, NOW) is Verdict.WAIT
    assert decide(Watch("s", OrderType.SNIPER, "SOL", "USDC", 50.0), views, NOW) is Verdict.WAIT
    assert decide(limit(1.0, amount=1.0), views, NOW) is Verdict.TRIGGER


def test_an_exhausted_venue_does_not_hide_one_that_can_fill() -> None:
    views: dict[VenueName, PoolSnapshot | None] = {M: shallow_binned(), R: cp_view(150.0)}
    assert decide(limit(100.0, amount=50.0), views, NOW) is Verdict.TRIGGER


def test_watch_of_an_order_carries_what_decide_needs() -> None:
    order = Order(
        order_id="order_9",
        token_in="SOL",
        token_out="USDC",
        amount=3.0,
        order_type=OrderType.LIMIT,
        status=OrderStatus.WAITING,
        submitted_at=NOW,
        limit_price=151.0,
        expires_at=NOW + 10,
    )
    assert Watch.of(order) == Watch("order_9", OrderType.LIMIT, "SOL", "USDC", 3.0, 151.0, None, NOW + 10)
    assert Watch.of(order).pair == ("SOL", "USDC")


# --------------------------------------------------------------------------- one read, many decisions


@dataclass
class CountingPool:
    """A pool that counts how often it is priced (and refuses to be traded)."""

    inner: Pool
    fills: int = 0
    trades: list[str] = field(default_factory=list)

    def spot(self) -> float:
        return self.inner.spot()

    def fill(self, amount_in: float, x_to_y: bool) -> Fill:
        self.fills += 1
        return self.inner.fill(amount_in, x_to_y)

    def swap(self, amount_in: float, x_to_y: bool) -> Fill:
        self.trades.append("swap")
        raise AssertionError("a watcher never trades")

    def move_price_to(self, price: float) -> None:
        self.trades.append("move")

    def decay(self, seconds: float) -> None:
        self.trades.append("decay")

    def reserves(self) -> tuple[float, float]:
        return self.inner.reserves()

    def set_reserves(self, x: float, y: float) -> None:
        self.trades.append("set_reserves")

    def copy(self) -> Pool:
        return CountingPool(self.inner.copy())


async def test_a_thousand_watches_are_decided_from_one_snapshot_per_venue() -> None:
    clock = ManualClock()
    timing = VenueTiming(quote_latency_s=0.0, swap_latency_s=(0.0, 0.0))
    venues = {name: SimulatedVenue(name, clock, random.Random(1), timing=timing) for name in (R, M)}
    snapshots = {name: await v.snapshot("SOL", "USDC") for name, v in venues.items()}
    counting = {name: CountingPool(view.pool) for name, view in snapshots.items() if view is not None}
    views: dict[VenueName, PoolSnapshot | None] = {name: PoolSnapshot(pool, "SOL") for name, pool in counting.items()}
    price = max(view.output("SOL", AMOUNT) for view in views.values() if view is not None) / AMOUNT
    for pool in counting.values():
        pool.fills = 0
    calls_before = {name: dict(v.calls) for name, v in venues.items()}

    limits = [price * (0.9 + 0.2 * i / 999) for i in range(1_000)]  # 90% .. 110% of the current price
    watches = [Watch(f"order_{i}", OrderType.LIMIT, "SOL", "USDC", AMOUNT, limit_price=p) for i, p in enumerate(limits)]
    verdicts = [decide(w, views, NOW) for w in watches]

    assert verdicts == [Verdict.TRIGGER if p <= price else Verdict.WAIT for p in limits]
    assert 0 < verdicts.count(Verdict.TRIGGER) < 1_000
    # each decision priced the order once on each venue's copy, locally ...
    assert {name: pool.fills for name, pool in counting.items()} == {R: 1_000, M: 1_000}
    assert all(pool.trades == [] for pool in counting.values())
    # ... and the venues were not asked again
    assert {name: dict(v.calls) for name, v in venues.items()} == calls_before
    assert all(calls == {"quote": 0, "snapshot": 1, "swap": 0} for calls in calls_before.values())


async def test_a_snapshot_is_a_copy_the_venue_does_not_share() -> None:
    clock = ManualClock()
    timing = VenueTiming(quote_latency_s=0.0, swap_latency_s=(0.0, 0.0))
    venue = SimulatedVenue(R, clock, random.Random(1), timing=timing)
    view = await venue.snapshot("SOL", "USDC")
    assert view is not None
    before = view.output("SOL", AMOUNT)
    venue.move_price("SOL", "USDC", -10.0)
    assert view.output("SOL", AMOUNT) == before  # the copy keeps the state it was read at
    assert (await venue.quote("SOL", "USDC", AMOUNT)).amount_out < before
