"""A simulated venue: pools from :mod:`venues.simulated.pools` behind the venue port (:class:`engine.ports.Venue`),
with configurable latency and transient faults. It settles on the chain as a real venue does: it agrees
a leg's terms (:meth:`SimulatedVenue.commit_leg`) and co-signs the order's transaction out of its vaults
(:meth:`SimulatedVenue.cosign`). It keeps no record of swaps by orderId: at most one swap per order is
the engine's protocol's to guarantee (:mod:`engine.settlement`), not the venue's."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from solders.keypair import Keypair
from solders.message import Message

from engine.clock import Clock
from engine.errors import InsufficientLiquidity, NoPoolError, SlippageExceeded, TransientVenueError, VenueError
from engine.models import DexQuote, VenueName
from engine.settings import Settings
from engine.settlement import LegTerms, to_base_units
from engine.tokens import decimals_of, mint_of
from settlement.keys import Keyring, token_account
from settlement.swap_tx import memo_of, transfers
from venues.simulated.market import (
    DLMM_BINS_EACH_SIDE,
    PROFILES,
    Model,
    PoolSpec,
    Profile,
    build_pool,
    pair_key,
    pools_for,
    reference_price,
)
from venues.simulated.pools import BinnedPool, ConstantProductPool, Pool, PoolExhausted

COSIGN_WINDOW_BPS = 50.0
"""How far above the agreed output a transaction may pay out of a vault and still be co-signed."""


class VenueRefused(VenueError):
    """The venue would not co-sign the transaction (not what it agreed)."""

    transient = False


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(raw: bytes) -> str:
    number = int.from_bytes(raw, "big")
    out = ""
    while number:
        number, rem = divmod(number, 58)
        out = _B58[rem] + out
    leading = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * leading + out


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """A copy of a pool's state; implements :class:`engine.ports.PoolView`."""

    pool: Pool
    base: str

    def output(self, token_in: str, amount: float) -> float:
        """What ``amount`` of ``token_in`` would give now; raises ``PoolExhausted`` past the depth."""
        return self.pool.fill(amount, x_to_y=token_in == self.base).amount_out

    def quote(self, venue: VenueName, token_in: str, token_out: str, amount: float, at_ms: float) -> DexQuote:
        """What the venue would quote in this state; raises ``PoolExhausted`` past the depth."""
        fill = self.pool.fill(amount, x_to_y=token_in == self.base)
        return DexQuote(
            venue=venue,
            token_in=token_in,
            token_out=token_out,
            amount_in=amount,
            amount_out=fill.amount_out,
            price=fill.amount_out / amount,
            spot_price=fill.spot_price,
            fee_bps=fill.fee_bps,
            price_impact_pct=fill.price_impact_pct,
            liquidity=fill.liquidity_out,
            quoted_at=at_ms,
        )


@dataclass(frozen=True, slots=True)
class VenueTiming:
    """Simulated latencies (seconds) and the chance that a call fails transiently."""

    quote_latency_s: float = 0.2
    swap_latency_s: tuple[float, float] = (2.0, 3.0)
    fault_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class Drift:
    """Mean-reverting (Ornstein-Uhlenbeck) drift of each pool's log price around its reference."""

    reversion_per_s: float = 1 / 20
    stationary_std: float = 0.002
    """0.2% around the reference: over a 2-3 s swap the price moves ~0.1% (1 sigma), well inside the
    default 50 bps slippage, as SOL/USDC does on a calm minute."""


@dataclass(slots=True)
class _LivePool:
    spec: PoolSpec
    pool: Pool
    reference: float
    updated_at: float


def venue_timing(settings: Settings) -> VenueTiming:
    return VenueTiming(
        quote_latency_s=settings.quote_latency_ms / 1000,
        swap_latency_s=(settings.swap_latency_ms[0] / 1000, settings.swap_latency_ms[1] / 1000),
        fault_rate=settings.fault_rate,
    )


@dataclass
class SimulatedVenue:
    """A venue over simulated pools; implements :class:`engine.ports.Venue`. Its pools are those the
    catalogue lists for its name, priced the way its :class:`Profile` says."""

    name: VenueName
    clock: Clock
    rng: random.Random
    timing: VenueTiming = field(default_factory=VenueTiming)
    drift: Drift = field(default_factory=Drift)
    seed: int = 7
    profile: Profile | None = None
    """Default: the built-in profile of its name."""
    keyring: Keyring | None = None
    """Holds the venue's authority (it co-signs swaps out of its vaults); None: it cannot settle on a chain."""
    _pools: dict[frozenset[str], _LivePool] = field(init=False, default_factory=dict)
    _agreed: dict[str, list[LegTerms]] = field(init=False, default_factory=dict)
    committing: int = field(init=False, default=0)
    """Legs being agreed right now (inside the simulated swap latency)."""
    calls: dict[str, int] = field(init=False, default_factory=lambda: {"quote": 0, "snapshot": 0, "swap": 0})
    listeners: list[Callable[[str, str, PoolSnapshot], None]] = field(init=False, default_factory=list)
    """Told ``(base, quote, state)`` whenever a pool is listed, moved or traded (an account subscription)."""

    def __post_init__(self) -> None:
        if self.profile is None:
            self.profile = PROFILES[self.name]
        now = self.clock.now()
        for spec in pools_for(self.name):
            live = _LivePool(spec, build_pool(spec, self.seed), reference_price(spec, self.seed), now)
            self._pools[pair_key(spec.base, spec.quote)] = live

    def _pool(self, token_in: str, token_out: str) -> _LivePool:
        live = self._pools.get(pair_key(token_in, token_out))
        if live is None:
            raise NoPoolError(self.name, f"no pool for {token_in}/{token_out}")
        self._advance(live)
        return live

    def _advance(self, live: _LivePool) -> None:
        """Let the price drift for the time elapsed since this pool was last touched."""
        now = self.clock.now()
        dt = now - live.updated_at
        if dt <= 0:
            return
        live.updated_at = now
        theta, std = self.drift.reversion_per_s, self.drift.stationary_std
        x = math.log(live.pool.spot() / live.reference)
        decay = math.exp(-theta * dt)
        x = x * decay + std * math.sqrt(1 - decay * decay) * self.rng.gauss(0.0, 1.0)
        live.pool.move_price_to(live.reference * math.exp(x))
        live.pool.decay(dt)

    def _maybe_fault(self, what: str) -> None:
        if self.timing.fault_rate > 0 and self.rng.random() < self.timing.fault_rate:
            raise TransientVenueError(self.name, f"{what} timed out (simulated RPC fault)")

    def _notify(self, live: _LivePool) -> None:
        for listener in self.listeners:
            listener(live.spec.base, live.spec.quote, PoolSnapshot(live.pool.copy(), live.spec.base))

    def list_pool(self, base: str, quote: str, reserve_base: float, reserve_quote: float) -> None:
        """List a new pool (simulation admin: a token launch). Replaces an existing one for the pair."""
        if reserve_base <= 0 or reserve_quote <= 0:
            raise ValueError("reserves must be positive")
        price = reserve_quote / reserve_base
        spec = PoolSpec(self.name, base, quote, depth_usd=0.0)
        pool: Pool
        assert self.profile is not None
        if self.profile.model is Model.CONSTANT_PRODUCT:
            pool = ConstantProductPool(reserve_x=reserve_base, reserve_y=reserve_quote, fee_bps=25.0)
        else:
            pool = BinnedPool.uniform(price, 2 * reserve_quote, 25.0, DLMM_BINS_EACH_SIDE)
        self._pools[pair_key(base, quote)] = _LivePool(spec, pool, price, self.clock.now())
        self._notify(self._pools[pair_key(base, quote)])

    def move_price(self, base: str, quote: str, percent: float) -> float:
        """Push the pool's price by ``percent`` (simulation admin: a market move); return the new spot."""
        live = self._pool(base, quote)
        target = live.pool.spot() * (1.0 + percent / 100.0)
        live.pool.move_price_to(target)
        live.reference = target
        self._notify(live)
        return live.pool.spot()

    async def pairs(self) -> frozenset[tuple[str, str]]:
        specs = [live.spec for live in self._pools.values()]
        return frozenset((a, b) for spec in specs for a, b in ((spec.base, spec.quote), (spec.quote, spec.base)))

    async def close(self) -> None:
        """Nothing to release: the pools live in memory, the vaults on the chain."""

    async def snapshot(self, token_in: str, token_out: str) -> PoolSnapshot | None:
        self.calls["snapshot"] += 1
        await self.clock.sleep(self.timing.quote_latency_s)
        live = self._pools.get(pair_key(token_in, token_out))
        if live is None:
            return None
        self._advance(live)
        return PoolSnapshot(live.pool.copy(), live.spec.base)

    async def quote(self, token_in: str, token_out: str, amount: float) -> DexQuote:
        self.calls["quote"] += 1
        await self.clock.sleep(self.timing.quote_latency_s)
        self._maybe_fault("quote")
        live = self._pool(token_in, token_out)
        try:
            fill = live.pool.fill(amount, x_to_y=token_in == live.spec.base)
        except PoolExhausted as exc:
            raise InsufficientLiquidity(self.name, str(exc)) from exc
        return DexQuote(
            venue=self.name,
            token_in=token_in,
            token_out=token_out,
            amount_in=amount,
            amount_out=fill.amount_out,
            price=fill.amount_out / amount,
            spot_price=fill.spot_price,
            fee_bps=fill.fee_bps,
            price_impact_pct=fill.price_impact_pct,
            liquidity=fill.liquidity_out,
            quoted_at=self.clock.epoch_ms(),
        )

    def _authority(self) -> Keypair:
        if self.keyring is None:
            raise TransientVenueError(self.name, "this venue holds no key: it cannot settle on a chain")
        return self.keyring.venue_authority(self.name)

    async def commit_leg(self, order_id: str, quote: DexQuote, min_amount_out: float) -> LegTerms:
        """Agree the leg at the pool's price now (it may have drifted since the quote), after the
        simulated swap latency; refuse below ``min_amount_out``. The pool moves as if it traded."""
        authority = str(self._authority().pubkey())
        low, high = self.timing.swap_latency_s
        self.committing += 1
        try:
            await self.clock.sleep(self.rng.uniform(low, high) if high > low else low)
        finally:
            self.committing -= 1
        self.calls["swap"] += 1
        self._maybe_fault("transaction send")
        live = self._pool(quote.token_in, quote.token_out)
        x_to_y = quote.token_in == live.spec.base
        try:
            would_give = live.pool.fill(quote.amount_in, x_to_y).amount_out
            if would_give < min_amount_out:
                raise SlippageExceeded(
                    self.name, f"slippage exceeded: swap would give {would_give:.6g}, minimum {min_amount_out:.6g} {quote.token_out}"
                )
            fill = live.pool.swap(quote.amount_in, x_to_y)
        except PoolExhausted as exc:
            raise InsufficientLiquidity(self.name, str(exc)) from exc
        self._notify(live)
        mint_in, mint_out = mint_of(quote.token_in), mint_of(quote.token_out)
        decimals_in, decimals_out = decimals_of(mint_in), decimals_of(mint_out)
        terms = LegTerms(
            venue=self.name,
            mint_in=mint_in,
            mint_out=mint_out,
            decimals_in=decimals_in,
            decimals_out=decimals_out,
            amount_in=to_base_units(quote.amount_in, decimals_in),
            amount_out=to_base_units(fill.amount_out, decimals_out),
            vault_in=str(token_account(authority, mint_in)),
            vault_out=str(token_account(authority, mint_out)),
            authority=authority,
        )
        self._agreed.setdefault(order_id, []).append(terms)
        del self._agreed[order_id][:-4]
        return terms

    async def cosign(self, order_id: str, message: bytes) -> bytes:
        """Sign ``message`` if every transfer out of this venue's vaults pays at most what it agreed for
        the order (within 50 bps) against at least what it agreed to receive."""
        authority = self._authority()
        parsed = Message.from_bytes(message)
        moves = transfers(parsed)
        if memo_of(parsed) != order_id:
            raise VenueRefused(self.name, "the transaction's memo does not name the order")
        agreed = self._agreed.get(order_id, [])
        mine = str(authority.pubkey())
        for move in (m for m in moves if m.owner == mine):
            honoured = any(
                t.mint_out == move.mint
                and move.amount <= t.amount_out * (1 + COSIGN_WINDOW_BPS / 10_000)
                and any(m.destination == t.vault_in and m.amount >= t.amount_in for m in moves)
                for t in agreed
            )
            if not honoured:
                raise VenueRefused(self.name, f"refusing to co-sign: {move.amount} out of the vault is not what was agreed for {order_id}")
        return bytes(authority.sign_message(message))
