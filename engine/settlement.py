"""Settlement: at most one landed swap per order, carried by the engine's own protocol.

1. Build and sign the order's one transaction (every leg, a memo with the orderId) on a recent
   blockhash; **persist its signature, bytes and last valid block height before sending**, by a
   compare-and-set that refuses to replace a transaction that could still land.
2. Send; poll its status until it lands, fails, or its blockhash expires.
3. On any resume, a persisted signature is asked of the chain first (:func:`next_step`): landed, it is
   adopted; unknown with its blockhash still valid, the same bytes are sent again (the chain drops a
   duplicate); expired and not landed (or failed), it can never land, and only then is a new one signed.

The decisions are pure functions; :class:`Settlement` runs them against the ports (the chain, the
store, the assembler that prices, builds and signs). No Solana library is imported here.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum
from typing import Protocol, TypeVar

from engine.chain import Chain, ChainTx, ChainUnavailable, SendOutcome, TxState
from engine.clock import Clock
from engine.errors import EngineError, StoreUnavailable, TransientVenueError, VenueError
from engine.models import DexQuote, SwapResult, VenueName

T = TypeVar("T")


def to_base_units(amount: float, decimals: int) -> int:
    """Human units to integer base units, rounded down (never more than the order said)."""
    return int((Decimal(repr(amount)).scaleb(decimals)).to_integral_value(rounding=ROUND_DOWN))


def from_base_units(units: int, decimals: int) -> float:
    return float(Decimal(units).scaleb(-decimals))


@dataclass(frozen=True, slots=True)
class PendingTx:
    """A signed transaction persisted with its order before it was sent."""

    order_id: str
    signature: str
    raw: bytes
    last_valid_height: int
    venue_window_ms: tuple[float, float] | None = field(default=None, compare=False)
    """Epoch ms the venues were asked for the legs' terms and had agreed them (their own time, for the
    benchmark's overhead; not part of any decision)."""


class Step(StrEnum):
    ADOPT = "adopt"
    """It landed: the order is confirmed with it."""
    RESEND = "resend"
    """Unknown and its blockhash still valid: send the same bytes again (never sign anew)."""
    REBUILD = "rebuild"
    """It can never land (expired unlanded, or failed): a new transaction may be signed."""


def _moved(order_id: str, found: Mapping[VenueName, SwapResult]) -> list[SwapResult]:
    """The swaps of a landed transaction; one that landed moving nothing fails the order (it must never
    be replaced by a new one: it landed)."""
    if not found:
        raise VenueError("chain", f"the transaction of {order_id} landed but moved no tokens")
    return list(found.values())


def next_step(pending: PendingTx, block_height: int, state: TxState) -> Step:
    """What to do with a persisted transaction, given the chain's answer (height read before the state)."""
    if state is TxState.LANDED:
        return Step.ADOPT
    if state is TxState.FAILED or block_height > pending.last_valid_height:
        return Step.REBUILD
    return Step.RESEND


@dataclass(frozen=True, slots=True)
class LegRequest:
    """One leg the route chose: the quote it was priced on and its share of the order's minimum output."""

    quote: DexQuote
    min_amount_out: float


@dataclass(frozen=True, slots=True)
class LegTerms:
    """A leg as a venue agreed to settle it, in base units: the trader pays ``amount_in`` into
    ``vault_in``; ``vault_out`` (under ``authority``) pays ``amount_out``."""

    venue: VenueName
    mint_in: str
    mint_out: str
    decimals_in: int
    decimals_out: int
    amount_in: int
    amount_out: int
    vault_in: str
    vault_out: str
    authority: str


def swaps_from_landed(
    tx: ChainTx, order_id: str, venue_of: Mapping[str, VenueName], decimals_of: Callable[[str], int], executed_at: float
) -> dict[VenueName, SwapResult]:
    """The swaps a landed transaction made, per venue, from its token balance changes: a venue's
    vault (owned by its authority) gains what the trader paid and loses what the trader got."""
    paid: dict[VenueName, float] = {}
    given: dict[VenueName, float] = {}
    for change in tx.token_changes:
        venue = venue_of.get(change.owner)
        if venue is None or change.delta == 0:
            continue
        amount = from_base_units(abs(change.delta), decimals_of(change.mint))
        side = paid if change.delta > 0 else given
        side[venue] = side.get(venue, 0.0) + amount
    return {
        venue: SwapResult(
            venue=venue,
            order_id=order_id,
            tx_hash=tx.signature,
            amount_in=paid[venue],
            amount_out=given[venue],
            execution_price=given[venue] / paid[venue],
            executed_at=executed_at,
        )
        for venue in sorted(set(paid) & set(given))
    }


class SettlingVenue(Protocol):
    """What settlement asks of a venue: to agree a leg's terms, then to co-sign the transaction."""

    async def commit_leg(self, order_id: str, quote: DexQuote, min_amount_out: float) -> LegTerms:
        """Price the leg now; raise :class:`engine.errors.SlippageExceeded` below ``min_amount_out``."""
        ...

    async def cosign(self, order_id: str, message: bytes) -> bytes:
        """The venue authority's signature of ``message``, once it has checked the legs out of its vaults."""
        ...


class Faucet(Protocol):
    """Creates missing token accounts on a development chain (the embedded one); absent on a cluster."""

    async def ensure_accounts(self, specs: Sequence[tuple[str, str, int, int, bool]]) -> None:
        """``(owner, mint, decimals, amount, fee_payer)`` each."""
        ...


class SettlementStore(Protocol):
    """Where an order's signed transaction is kept (PostgreSQL), with the order."""

    async def load(self, order_id: str) -> PendingTx | None: ...

    async def save(self, pending: PendingTx, replaces: str | None, epoch: int | None = None) -> bool:
        """Store ``pending`` if the order's stored signature is still ``replaces`` (None: none stored)
        and, with ``epoch``, the run of that epoch still holds the order, atomically with the claim a
        newer run makes (so a run claimed away after it was allowed to sign stores, and sends, nothing).
        False if another run stored one first (it must be followed, not replaced) or holds the order."""
        ...


@dataclass(frozen=True, slots=True)
class SignedSwap:
    pending: PendingTx
    legs: tuple[LegTerms, ...]


class TxAssembler(Protocol):
    """Prices every leg at its venue, builds the one transaction, and has it signed (trader and venues)."""

    def venue_of(self, tx: ChainTx) -> Mapping[str, VenueName]:
        """The venue of each vault authority (base58) that signed ``tx``, to read what it landed."""
        ...

    def decimals_of(self, mint: str) -> int: ...

    async def assemble(
        self, order_id: str, account: str, legs: Sequence[LegRequest], may_sign: Callable[[], Awaitable[bool]]
    ) -> SignedSwap:
        """Raise :class:`NotAllowedToSign` if ``may_sign`` says no right before signing."""
        ...


class NotAllowedToSign(EngineError):
    """The run lost its claim on the order: it must not sign."""

    def __init__(self, order_id: str) -> None:
        super().__init__(order_id)
        self.order_id = order_id

    def __str__(self) -> str:
        return f"run of {self.order_id} may no longer sign"


Checkpoint = Callable[[str, str], Awaitable[None]]
"""Told of each protocol step ``(step, order_id)`` as it is passed (fault injection in tests; nothing in production)."""


async def no_checkpoint(step: str, order_id: str) -> None:
    return None


STEPS = ("signed", "persisted", "sent", "landed", "before_confirm")
"""The protocol steps a fault can be injected after."""


class Settler(Protocol):
    """How the workflow lands an order's swap and learns whether one landed (:class:`Settlement`)."""

    @property
    def one_transaction(self) -> bool:
        """Every leg lands in one transaction (all or none): what landed is the whole swap."""
        ...

    @property
    def checkpoint(self) -> Checkpoint: ...

    async def landed(self, order_id: str) -> dict[VenueName, SwapResult]: ...

    async def settle(
        self,
        order_id: str,
        account: str,
        legs: Sequence[LegRequest],
        may_sign: Callable[[], Awaitable[bool]],
        epoch: int | None = None,
    ) -> list[SwapResult]: ...


@dataclass
class Settlement:
    """Runs the protocol for one order at a time (many at once per process). Implements :class:`Settler`."""

    chain: Chain
    store: SettlementStore
    assembler: TxAssembler
    clock: Clock
    poll_s: float = 0.05
    resend_s: float = 2.0
    checkpoint: Checkpoint = field(default=no_checkpoint)
    one_transaction: bool = True
    outage_delays_s: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
    """Waits between tries while the store or the chain is unreachable (the last one repeats): an order
    with a transaction in flight waits an outage out rather than give up on what may have landed."""

    async def _patient(self, op: Callable[[], Awaitable[T]]) -> T:
        tries = 0
        while True:
            try:
                return await op()
            except (StoreUnavailable, ChainUnavailable):
                await self.clock.sleep(self.outage_delays_s[min(tries, len(self.outage_delays_s) - 1)])
                tries += 1

    async def landed(self, order_id: str) -> dict[VenueName, SwapResult]:
        """The swaps of the order's persisted transaction if it lands (following it until it lands
        or can no longer); empty when none is persisted or it can never land."""
        pending = await self._patient(lambda: self.store.load(order_id))
        if pending is None:
            return {}
        return await self._follow(pending) or {}

    async def settle(
        self,
        order_id: str,
        account: str,
        legs: Sequence[LegRequest],
        may_sign: Callable[[], Awaitable[bool]],
        epoch: int | None = None,
    ) -> list[SwapResult]:
        """Land exactly one transaction for the order (following one already persisted first). With the
        run's ``epoch``, a transaction is stored (and so sent) only while that run holds the order."""
        while True:
            pending = await self._patient(lambda: self.store.load(order_id))
            if pending is not None:
                found = await self._follow(pending)
                if found is not None:
                    return _moved(order_id, found)
            try:
                signed = await self.assembler.assemble(order_id, account, legs, may_sign)
            except ChainUnavailable as exc:  # nothing was signed: the workflow may try again later
                raise TransientVenueError("chain", str(exc)) from exc
            await self.checkpoint("signed", order_id)
            replaces = pending.signature if pending else None
            if not await self._patient(functools.partial(self.store.save, signed.pending, replaces, epoch)):
                continue  # another run persisted its transaction first (or ours, its answer lost): follow it
            await self.checkpoint("persisted", order_id)
            found = await self._follow(signed.pending, fresh=True)
            if found is not None:
                return _moved(order_id, found)
            raise TransientVenueError(signed.legs[0].venue, "transaction expired or failed without landing; signing a new one")

    async def _follow(self, pending: PendingTx, fresh: bool = False) -> dict[VenueName, SwapResult] | None:
        """Send and poll until it lands (its swaps, which a transaction that moved nothing lacks) or can
        never land (None). Only None lets a new transaction be signed. A ``fresh`` one (signed on a recent
        blockhash and persisted by this run just now) is sent before its status is asked: no one else has
        its bytes, so the chain cannot know it yet."""
        next_send = 0.0
        while True:
            if fresh:
                fresh, step = False, Step.RESEND
            else:
                report = await self._patient(lambda: self.chain.statuses([pending.signature]))
                step = next_step(pending, report.block_height, report.states[0])
            if step is Step.ADOPT:
                tx = await self._patient(lambda: self.chain.transaction(pending.signature))
                if tx is not None:
                    await self.checkpoint("landed", pending.order_id)
                    return swaps_from_landed(
                        tx, pending.order_id, self.assembler.venue_of(tx), self.assembler.decimals_of, self.clock.epoch_ms()
                    )
            elif step is Step.REBUILD:
                return None
            elif self.clock.now() >= next_send:
                result = await self._patient(lambda: self.chain.send(pending.raw))
                next_send = self.clock.now() + self.resend_s
                if result.outcome in (SendOutcome.ACCEPTED, SendOutcome.DUPLICATE):
                    await self.checkpoint("sent", pending.order_id)
                    continue  # ask at once: an embedded chain has executed it already
            await self.clock.sleep(self.poll_s)
