"""The keypairs the engine holds: one wallet per account; for each simulated venue, one authority per
pool (it owns the pool's two vaults) and a market maker (the traders elsewhere who move its prices).

Derived from one secret seed (``OEE_CHAIN_KEY_SEED``) and the holder's name, so every process that
has the seed has the same keys without passing secrets between actors, and a restart keeps them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address


@dataclass(frozen=True)
class Keyring:
    seed: str

    def _derive(self, role: str, name: str) -> Keypair:
        return Keypair.from_seed(hashlib.sha256(f"{self.seed}|{role}|{name}".encode()).digest())

    def wallet(self, account: str) -> Keypair:
        """The trader wallet of ``account``."""
        return self._derive("wallet", account)

    def venue_authority(self, venue: str) -> Keypair:
        """A venue's own authority (a venue with one set of vaults, such as a plugin's)."""
        return self._derive("venue", venue)

    def pool_authority(self, venue: str, mint_a: str, mint_b: str) -> Keypair:
        """The authority of ``venue``'s pool for a pair of mints (either order): it owns the pool's vaults
        (its associated token accounts) and co-signs every swap out of them."""
        low, high = sorted((mint_a, mint_b))
        return self._derive("pool", f"{venue}|{low}|{high}")

    def market_maker(self, venue: str) -> Keypair:
        """The wallet that moves ``venue``'s pool prices (listing, arbitrage), as traders elsewhere do."""
        return self._derive("market-maker", venue)


def token_account(owner: Pubkey | str, mint: Pubkey | str) -> Pubkey:
    """The owner's associated token account for ``mint``."""
    owner_key = owner if isinstance(owner, Pubkey) else Pubkey.from_string(owner)
    mint_key = mint if isinstance(mint, Pubkey) else Pubkey.from_string(mint)
    return get_associated_token_address(owner_key, mint_key)
