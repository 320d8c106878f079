"""A simulated pool's vaults on the chain: two token accounts under the pool's own authority whose
balances are the pool's reserves, and the market maker's transfers that move them (a listing's deposit,
arbitrage after a price move). Quotes price what the vaults hold, as a real AMM's do."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey

from engine.tokens import decimals_of, mint_of
from settlement.keys import Keyring, token_account
from settlement.swap_tx import assemble, memo, transfer_checked

MAKER_UNITS = 2**62
"""The market maker's inventory of each mint, in base units (the chain counts in u64)."""


def _units(amount: float, decimals: int) -> int:
    """Human units to base units, rounded toward zero (either sign)."""
    return int(Decimal(repr(amount)).scaleb(decimals).to_integral_value(rounding=ROUND_DOWN))


@dataclass(frozen=True, slots=True)
class PoolVaults:
    """Where a pool's reserves are: ``authority``'s token accounts of the base and the quote mint."""

    authority: Keypair
    mint_base: str
    mint_quote: str
    decimals_base: int
    decimals_quote: int

    @classmethod
    def of(cls, keyring: Keyring, venue: str, base: str, quote: str) -> PoolVaults:
        mint_base, mint_quote = mint_of(base), mint_of(quote)
        authority = keyring.pool_authority(venue, mint_base, mint_quote)
        return cls(authority, mint_base, mint_quote, decimals_of(mint_base), decimals_of(mint_quote))

    @property
    def owner(self) -> str:
        return str(self.authority.pubkey())

    def vault(self, mint: str) -> str:
        return str(token_account(self.authority.pubkey(), mint))

    def units(self, base: float, quote: float) -> tuple[int, int]:
        return _units(base, self.decimals_base), _units(quote, self.decimals_quote)

    def amounts(self, base_units: int, quote_units: int) -> tuple[float, float]:
        return base_units / 10**self.decimals_base, quote_units / 10**self.decimals_quote


def rebalance_tx(vaults: PoolVaults, maker: Keypair, delta_base: int, delta_quote: int, blockhash: str, note: str) -> bytes | None:
    """The market maker's transaction that changes the vaults by ``(delta_base, delta_quote)`` base units:
    into a vault from the maker, out of one to the maker (signed by the pool authority). None: no change."""
    instructions: list[Instruction] = []
    for mint, decimals, delta in (
        (vaults.mint_base, vaults.decimals_base, delta_base),
        (vaults.mint_quote, vaults.decimals_quote, delta_quote),
    ):
        own = token_account(maker.pubkey(), mint)
        vault = token_account(vaults.authority.pubkey(), mint)
        mint_address = Pubkey.from_string(mint)
        if delta > 0:
            instructions.append(transfer_checked(own, mint_address, vault, maker.pubkey(), delta, decimals))
        elif delta < 0:
            instructions.append(transfer_checked(vault, mint_address, own, vaults.authority.pubkey(), -delta, decimals))
    if not instructions:
        return None
    instructions.append(memo(note))
    message = Message.new_with_blockhash(instructions, maker.pubkey(), Hash.from_string(blockhash))
    payload = bytes(message)
    signatures = {maker.pubkey(): maker.sign_message(payload), vaults.authority.pubkey(): vaults.authority.sign_message(payload)}
    return bytes(assemble(message, signatures))
