"""A simulated venue: pools from :mod:`venues.simulated.pools` behind the venue port (:class:`engine.ports.Venue`),
with configurable latency and transient faults. It settles on the chain as a real venue does: it agrees
a leg's terms (:meth:`SimulatedVenue.commit_leg`) and co-signs the order's transaction out of its vaults
(:meth:`SimulatedVenue.cosign`). It keeps no record of swaps by orderId: at most one swap per order is
the engine's protocol's to guarantee (:mod:`engine.settlement`), not the venue's.

With a chain, each pool's reserves are its vaults' balances (:mod:`venues.simulated.vaults`), read every
``refresh_s``; a swap the venue agreed moves its pool at once and the next read replaces it with what
landed. Price moves (drift, the admin's ``move_price``, a listing) are market-maker transfers on the
chain, so what a quote prices is what the chain holds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from solders.keypair import Keypair
from solders.message import Message

from engine.chain import Chain, SendOutcome
from engine.clock import Clock
from engine.errors import InsufficientLiquidity, NoPoolError, SlippageExceeded, TransientVenueError, VenueError
from engine.models import DexQuote, VenueName
from engine.settings import Settings
from engine.settlement import Faucet, LegTerms, to_base_units
from engine.tokens import decimals_of, mint_of
from settlement.keys import Keyring
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
from venues.simulated.vaults import MAKER_UNITS, PoolVaults, rebalance_tx

log = logging.getLogger("venues.simulated")

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
    step_s: float = 1.0
    """With a chain: how often a touched pool's price drifts (each drift is a market-maker transaction)."""
    stationary_std: float = 0.002
    """0.2% around the reference: over a 2-3 s swap the price moves ~0.1% (1 sigma), well inside the
    default 50 bps slippage, as SOL/USDC does on a calm minute."""


@dataclass(slots=True)
class _LivePool:
    spec: PoolSpec
    pool: Pool
    reference: float
    updated_at: float
    vaults: PoolVaults | None = None
    listed: bool = False
    """Listed here but not yet deposited on the chain."""
    owed: tuple[float, float] = (0.0, 0.0)
    """Price moves made to the model that the chain does not have yet, ``(base, quote)``."""
    version: int = 0
    """Counts moves written to the chain: a read taken before one must not replace the model."""
    touched: bool = False
    writing: asyncio.Future[None] | None = None


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
    """Holds the pools' authorities (they co-sign swaps out of their vaults); None: it cannot settle on a chain."""
    chain: Chain | None = None
    """Where the pools' vaults are: their balances are the reserves. None: the pools live in memory only."""
    faucet: Faucet | None = None
    """Creates the vaults and the market maker's accounts (a development chain)."""
    refresh_s: float = 0.1
    """How often the vault balances are read."""
    _refresher: asyncio.Task[None] | None = field(init=False, default=None)
    _pools: dict[frozenset[str], _LivePool] = field(init=False, default_factory=dict)
    _agreed: dict[str, list[LegTerms]] = field(init=False, default_factory=dict)
    committing: int = field(init=False, default=0)
    """Legs being agreed right now (inside the simulated swap latency)."""
    calls: dict[str, int] = field(init=False, default_factory=lambda: {"quote": 0, "snapshot": 0, "swap": 0})
    listeners: list[Callable[[str, str, Callable[[], PoolSnapshot]], None]] = field(init=False, default_factory=list)
    """Told ``(base, quote, state)`` whenever a pool is listed, moved, drifted or traded (an account
    subscription); ``state()`` copies the pool as it is then, so a burst of swaps costs one copy."""

    def __post_init__(self) -> None:
        if self.profile is None:
            self.profile = PROFILES[self.name]
        now = self.clock.now()
        for spec in pools_for(self.name):
            live = _LivePool(spec, build_pool(spec, self.seed), reference_price(spec, self.seed), now, self._vaults(spec.base, spec.quote))
            self._pools[pair_key(spec.base, spec.quote)] = live

    def _vaults(self, base: str, quote: str) -> PoolVaults | None:
        return PoolVaults.of(self.keyring, self.name, base, quote) if self.keyring is not None else None

    def _pool(self, token_in: str, token_out: str) -> _LivePool:
        live = self._pools.get(pair_key(token_in, token_out))
        if live is None:
            raise NoPoolError(self.name, f"no pool for {token_in}/{token_out}")
        self._advance(live)
        return live

    def _advance(self, live: _LivePool) -> None:
        """Let the price drift for the time elapsed since this pool was last touched (with a chain, the
        refresh loop drifts touched pools, as market-maker transactions)."""
        if self.chain is not None:
            live.touched = True
            return
        self._drift(live)

    def _drift(self, live: _LivePool) -> None:
        now = self.clock.now()
        dt = now - live.updated_at
        if dt <= 0:
            return
        live.updated_at = now
        theta, std = self.drift.reversion_per_s, self.drift.stationary_std
        x = math.log(live.pool.spot() / live.reference)
        decay = math.exp(-theta * dt)
        x = x * decay + std * math.sqrt(1 - decay * decay) * self.rng.gauss(0.0, 1.0)
        self._move(live, live.reference * math.exp(x))
        live.pool.decay(dt)
        if self.chain is not None:  # the refresh loop drifted it: pushed like any other change
            self._notify(live)

    def _move(self, live: _LivePool, price: float) -> None:
        """Arbitrage the pool to ``price``; with a chain, what it changed is owed to the vaults."""
        before = live.pool.reserves()
        live.pool.move_price_to(price)
        if self.chain is not None:
            after = live.pool.reserves()
            live.owed = (live.owed[0] + after[0] - before[0], live.owed[1] + after[1] - before[1])
            self._write_soon(live)

    def _maybe_fault(self, what: str) -> None:
        if self.timing.fault_rate > 0 and self.rng.random() < self.timing.fault_rate:
            raise TransientVenueError(self.name, f"{what} timed out (simulated RPC fault)")

    def _notify(self, live: _LivePool) -> None:
        if not self.listeners:
            return

        def state() -> PoolSnapshot:
            """A copy of the pool as it is when asked (a listener that forwards later copies it once)."""
            return PoolSnapshot(live.pool.copy(), live.spec.base)

        for listener in self.listeners:
            listener(live.spec.base, live.spec.quote, state)

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
        live = _LivePool(spec, pool, price, self.clock.now(), self._vaults(base, quote), listed=self.chain is not None)
        self._pools[pair_key(base, quote)] = live
        self._write_soon(live)
        self._notify(live)

    def move_price(self, base: str, quote: str, percent: float) -> float:
        """Push the pool's price by ``percent`` (simulation admin: a market move); return the new spot."""
        live = self._pool(base, quote)
        target = live.pool.spot() * (1.0 + percent / 100.0)
        self._move(live, target)
        live.reference = target
        self._notify(live)
        return live.pool.spot()

    async def pairs(self) -> frozenset[tuple[str, str]]:
        specs = [live.spec for live in self._pools.values()]
        return frozenset((a, b) for spec in specs for a, b in ((spec.base, spec.quote), (spec.quote, spec.base)))

    async def close(self) -> None:
        """Stop reading the vaults (they stay on the chain)."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None

    # The chain side: vaults, market-maker writes, balance reads.

    def _maker(self) -> Keypair:
        assert self.keyring is not None
        return self.keyring.market_maker(self.name)

    async def open(self) -> None:
        """Put the pools on the chain, then keep reading them: fund the market maker, create each pool's
        vaults and deposit its reserves; a pool whose vaults hold tokens already (the venue restarted, the
        chain did not) takes its reserves from them instead."""
        if self.chain is None or self.keyring is None:
            return
        pools = [live for live in self._pools.values() if live.vaults is not None]
        await self._ensure_accounts(pools)
        for live, (held_base, held_quote) in zip(pools, await self._balances(pools), strict=True):
            if held_base == 0 and held_quote == 0:
                live.listed = True
                self._write_soon(live)
            else:
                self._apply(live, held_base, held_quote)
        await self.written()
        self._refresher = asyncio.ensure_future(self._refresh_loop())

    async def _ensure_accounts(self, pools: list[_LivePool]) -> None:
        if self.faucet is None:
            return
        maker = str(self._maker().pubkey())
        specs = []
        for live in pools:
            assert live.vaults is not None
            for mint in (live.vaults.mint_base, live.vaults.mint_quote):
                specs.append((maker, mint, decimals_of(mint), MAKER_UNITS, True))
                specs.append((live.vaults.owner, mint, decimals_of(mint), 0, False))
        await self.faucet.ensure_accounts(specs)

    async def _balances(self, pools: list[_LivePool]) -> list[tuple[int, int]]:
        assert self.chain is not None
        reads = []
        for live in pools:
            assert live.vaults is not None
            reads.append(self.chain.token_balances(live.vaults.owner, [live.vaults.mint_base, live.vaults.mint_quote]))
        found = await asyncio.gather(*reads)
        return [
            (held[live.vaults.mint_base], held[live.vaults.mint_quote])
            for live, held in zip(pools, found, strict=True)
            if live.vaults is not None
        ]

    def _apply(self, live: _LivePool, held_base: int, held_quote: int) -> None:
        assert live.vaults is not None
        with contextlib.suppress(PoolExhausted):  # an emptied pool keeps its last state: quotes refuse on depth
            live.pool.set_reserves(*live.vaults.amounts(held_base, held_quote))

    async def sync(self) -> None:
        """Read every pool's vault balances: they become its reserves. A pool with a move the chain does
        not have yet, or written since the read began, keeps its model until the next read."""
        pools = [live for live in self._pools.values() if live.vaults is not None]
        versions = [live.version for live in pools]
        balances = await self._balances(pools)
        for live, version, (held_base, held_quote) in zip(pools, versions, balances, strict=True):
            current = self._pools.get(pair_key(live.spec.base, live.spec.quote)) is live
            if current and live.version == version and not live.listed and live.owed == (0.0, 0.0) and live.writing is None:
                self._apply(live, held_base, held_quote)

    def _write_soon(self, live: _LivePool) -> None:
        if self.chain is None or live.vaults is None or live.writing is not None:
            return
        live.writing = asyncio.ensure_future(self._write(live))

    async def written(self) -> None:
        """Wait until every move made so far is on the chain."""
        while pending := [live.writing for live in self._pools.values() if live.writing is not None]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _write(self, live: _LivePool) -> None:
        """Send what the chain owes the pool: a listing's whole reserves, else the moves made since."""
        assert self.chain is not None and live.vaults is not None
        try:
            while live.listed or live.owed != (0.0, 0.0):
                if live.listed:
                    await self._ensure_accounts([live])
                    [(held_base, held_quote)] = await self._balances([live])
                    want_base, want_quote = live.vaults.units(*live.pool.reserves())
                    delta = (want_base - held_base, want_quote - held_quote)
                    live.listed, live.owed = False, (0.0, 0.0)
                else:
                    delta = live.vaults.units(*live.owed)
                    live.owed = (0.0, 0.0)
                blockhash = await self.chain.latest_blockhash()
                raw = rebalance_tx(
                    live.vaults, self._maker(), *delta, blockhash.blockhash, f"market {self.name} {live.spec.base}/{live.spec.quote}"
                )
                live.version += 1
                if raw is not None:
                    sent = await self.chain.send(raw)
                    if sent.outcome not in (SendOutcome.ACCEPTED, SendOutcome.DUPLICATE):
                        log.warning("market-maker transfer refused; the next read corrects the pool", extra={"error": sent.error})
        except Exception:  # a lost write is corrected by the next read of the vaults
            log.warning("market-maker transfer failed", exc_info=True)
        finally:
            live.writing = None

    async def _refresh_loop(self) -> None:
        while True:
            await self.clock.sleep(self.refresh_s)
            try:
                now = self.clock.now()
                for live in list(self._pools.values()):
                    if live.touched and now - live.updated_at >= self.drift.step_s:
                        live.touched = False
                        self._drift(live)
                await self.sync()
            except Exception:  # a failed read is retried on the next turn
                log.warning("reading the vaults failed", exc_info=True)

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

    def _authority(self) -> Keyring:
        if self.keyring is None:
            raise TransientVenueError(self.name, "this venue holds no key: it cannot settle on a chain")
        return self.keyring

    async def commit_leg(self, order_id: str, quote: DexQuote, min_amount_out: float) -> LegTerms:
        """Agree the leg at the pool's price now (it may have drifted since the quote), after the
        simulated swap latency; refuse below ``min_amount_out``. The pool moves as if it traded (until the
        next read of its vaults says what landed)."""
        self._authority()
        low, high = self.timing.swap_latency_s
        self.committing += 1
        try:
            await self.clock.sleep(self.rng.uniform(low, high) if high > low else low)
        finally:
            self.committing -= 1
        self.calls["swap"] += 1
        self._maybe_fault("transaction send")
        live = self._pool(quote.token_in, quote.token_out)
        if live.writing is not None:  # a pool just listed or moved: its vaults first
            await asyncio.shield(live.writing)
        x_to_y = quote.token_in == live.spec.base
        vaults = live.vaults
        assert vaults is not None
        authority = vaults.owner
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
            vault_in=vaults.vault(mint_in),
            vault_out=vaults.vault(mint_out),
            authority=authority,
        )
        self._agreed.setdefault(order_id, []).append(terms)
        del self._agreed[order_id][:-4]
        return terms

    async def cosign(self, order_id: str, message: bytes) -> bytes:
        """Sign ``message`` (as the authority of the pool the order's leg was agreed on) if every transfer
        out of this venue's vaults pays at most what it agreed for the order (within 50 bps) against at
        least what it agreed to receive."""
        self._authority()
        parsed = Message.from_bytes(message)
        moves = transfers(parsed)
        if memo_of(parsed) != order_id:
            raise VenueRefused(self.name, "the transaction's memo does not name the order")
        agreed = self._agreed.get(order_id, [])
        mine = {live.vaults.owner: live.vaults.authority for live in self._pools.values() if live.vaults is not None}
        signers = {m.owner for m in moves if m.owner in mine}
        if len(signers) != 1:
            raise VenueRefused(self.name, f"refusing to co-sign: the transaction pays out of {len(signers)} of this venue's pools")
        for move in (m for m in moves if m.owner in mine):
            honoured = any(
                t.mint_out == move.mint
                and move.amount <= t.amount_out * (1 + COSIGN_WINDOW_BPS / 10_000)
                and any(m.destination == t.vault_in and m.amount >= t.amount_in for m in moves)
                for t in agreed
            )
            if not honoured:
                raise VenueRefused(self.name, f"refusing to co-sign: {move.amount} out of the vault is not what was agreed for {order_id}")
        return bytes(mine[signers.pop()].sign_message(message))
