"""Assembles an order's one swap transaction: each leg priced at its venue, the trader's signature,
then each venue's. Implements :class:`engine.settlement.TxAssembler`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from solders.pubkey import Pubkey
from solders.signature import Signature

from engine.chain import Chain, ChainTx
from engine.errors import VenueError
from engine.models import VenueName
from engine.settlement import Faucet, LegRequest, LegTerms, NotAllowedToSign, PendingTx, SettlingVenue, SignedSwap
from engine.tokens import BY_MINT, Token, decimals_of
from settlement.keys import Keyring
from settlement.swap_tx import assemble, swap_message


@dataclass(frozen=True, slots=True)
class Funding:
    """What the embedded chain's faucet gives a new wallet: this many USD of each listed token."""

    wallet_usd: float = 1_000_000.0
    vault_units: int = 2**62
    """A venue vault's inventory, in base units (more than any order can take)."""

    def wallet_units(self, token: Token) -> int:
        """A new wallet's base units of a listed token (at most 2**62: the chain counts in u64)."""
        return min(int(self.wallet_usd / token.reference_usd * 10**token.decimals), 2**62)


@dataclass
class ChainAssembler:
    keyring: Keyring
    venues: Mapping[VenueName, SettlingVenue]
    chain: Chain
    faucet: Faucet | None = None
    funding: Funding = field(default_factory=Funding)
    _funded: set[tuple[str, str]] = field(default_factory=set)
    _venue_of: dict[str, VenueName] = field(default_factory=dict)
    _pool_authorities: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._venue_of = {str(self.keyring.venue_authority(name).pubkey()): name for name in self.venues}

    def venue_of(self, tx: ChainTx) -> Mapping[str, VenueName]:
        """Authorities seen agreeing legs, each venue's own authority, and the authority each venue's pool
        for the transaction's pair of mints would have (so a transaction found after a restart reads too)."""
        unknown = {c.owner for c in tx.token_changes} - set(self._venue_of)
        mints = sorted({c.mint for c in tx.token_changes})
        for name in self.venues if unknown else ():
            for i, mint_a in enumerate(mints):
                for mint_b in mints[i + 1 :]:
                    key = (name, mint_a, mint_b)
                    if key not in self._pool_authorities:
                        self._pool_authorities[key] = str(self.keyring.pool_authority(*key).pubkey())
                    authority = self._pool_authorities[key]
                    if authority in unknown:
                        self._venue_of[authority] = name
        return self._venue_of

    def decimals_of(self, mint: str) -> int:
        return decimals_of(mint)

    async def fund(self, owner: str, mints: Sequence[str], vault: bool) -> None:
        """Make sure ``owner`` has a token account for each mint (the embedded chain only)."""
        if self.faucet is None:
            return
        missing = [m for m in mints if (owner, m) not in self._funded]
        if not missing:
            return
        specs = []
        for mint in missing:
            listed = BY_MINT.get(mint)
            if vault:
                amount = self.funding.vault_units
            elif listed is not None:
                amount = self.funding.wallet_units(listed)
            else:
                amount = 0
            specs.append((owner, mint, decimals_of(mint), amount, not vault))
        await self.faucet.ensure_accounts(specs)
        self._funded.update((owner, m) for m in missing)

    async def assemble(
        self, order_id: str, account: str, legs: Sequence[LegRequest], may_sign: Callable[[], Awaitable[bool]]
    ) -> SignedSwap:
        trader = self.keyring.wallet(account)
        asked_ms = time.time() * 1000
        blockhash = await self.chain.latest_blockhash()
        cosigned: list[bytes | None]
        if len(legs) == 1:  # one venue: it agrees the leg and co-signs the transaction it makes in one call
            [leg] = legs
            terms, signature = await agree_and_cosign(self.venues[leg.quote.venue], order_id, leg, trader.pubkey(), blockhash.blockhash)
            agreed, cosigned = [terms], [signature]
        else:
            venues = [self.venues[leg.quote.venue] for leg in legs]
            agreed = list(
                await asyncio.gather(*(v.commit_leg(order_id, leg.quote, leg.min_amount_out) for v, leg in zip(venues, legs, strict=True)))
            )
            cosigned = [None] * len(agreed)
        agreed_ms = time.time() * 1000
        self._venue_of.update((t.authority, t.venue) for t in agreed)
        for t in agreed:
            if t.amount_in <= 0 or t.amount_out <= 0:  # a transaction that moves nothing must not be signed
                raise VenueError(t.venue, "the leg moves less than one base unit of a token; the amount is too small")
        owner = str(trader.pubkey())
        await self.fund(owner, sorted({t.mint_in for t in agreed} | {t.mint_out for t in agreed}), vault=False)
        for t in agreed:
            await self.fund(t.authority, sorted({t.mint_in, t.mint_out}), vault=True)
        message = swap_message(order_id, trader.pubkey(), agreed, blockhash.blockhash)
        if not await may_sign():
            raise NotAllowedToSign(order_id)
        raw_message = bytes(message)
        signatures: dict[Pubkey, Signature] = {trader.pubkey(): trader.sign_message(raw_message)}
        for t, given in zip(agreed, cosigned, strict=True):
            authority = Pubkey.from_string(t.authority)
            if given is not None and Signature.from_bytes(given).verify(authority, raw_message):
                signatures[authority] = Signature.from_bytes(given)
        missing = [t for t in agreed if Pubkey.from_string(t.authority) not in signatures]
        asked = await asyncio.gather(*(self.venues[t.venue].cosign(order_id, raw_message) for t in missing))
        for t, signature in zip(missing, asked, strict=True):
            signatures[Pubkey.from_string(t.authority)] = Signature.from_bytes(signature)
        tx = assemble(message, signatures)
        pending = PendingTx(order_id, str(tx.signatures[0]), bytes(tx), blockhash.last_valid_height, (asked_ms, agreed_ms))
        return SignedSwap(pending, tuple(agreed))


async def agree_and_cosign(
    venue: SettlingVenue, order_id: str, leg: LegRequest, trader: Pubkey, blockhash: str
) -> tuple[LegTerms, bytes | None]:
    """A one-leg order's terms and the venue's co-signature of the transaction they make with ``trader`` on
    ``blockhash``: in one call where the venue offers it (its actor does), else its terms only (the
    co-signature is asked once the trader may sign)."""
    fold = getattr(venue, "commit_signed", None)
    if fold is not None:
        found: tuple[LegTerms, bytes | None] = await fold(order_id, leg.quote, leg.min_amount_out, str(trader), blockhash)
        return found
    return await venue.commit_leg(order_id, leg.quote, leg.min_amount_out), None


async def commit_signed(venue: SettlingVenue, order_id: str, leg: LegRequest, trader: str, blockhash: str) -> tuple[LegTerms, bytes]:
    """What a venue's actor does for :func:`agree_and_cosign`: agree the leg, build the transaction it
    makes (the same bytes the assembler builds) and co-sign it."""
    terms = await venue.commit_leg(order_id, leg.quote, leg.min_amount_out)
    message = swap_message(order_id, Pubkey.from_string(trader), [terms], blockhash)
    return terms, await venue.cosign(order_id, bytes(message))
