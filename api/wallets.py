"""The edge's view of the chain: each account's wallet and its balances, and a wallet's check that it
can pay an order (before the 202). On the embedded chain a wallet is funded the first time it is seen."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.chain import Chain, ChainTx
from engine.settings import Settings
from engine.settlement import Faucet, from_base_units, to_base_units
from engine.tokens import BY_MINT, TOKENS, decimals_of, mint_of
from settlement.assembler import Funding
from settlement.keys import Keyring


@dataclass(frozen=True, slots=True)
class Shortfall:
    token: str
    held: float
    needed: float

    def __str__(self) -> str:
        return f"the wallet holds {self.held:.9g} {self.token}; the order needs {self.needed:.9g}"


@dataclass
class Wallets:
    chain: Chain
    keyring: Keyring
    faucet: Faucet | None = None
    funding: Funding = field(default_factory=Funding)
    _funded: set[str] = field(default_factory=set)

    def address(self, account: str) -> str:
        return str(self.keyring.wallet(account).pubkey())

    async def _ensure(self, account: str) -> str:
        owner = self.address(account)
        if self.faucet is not None and account not in self._funded:
            specs = [(owner, t.mint, t.decimals, self.funding.wallet_units(t), True) for t in TOKENS]
            await self.faucet.ensure_accounts(specs)
            self._funded.add(account)
        return owner

    async def balances(self, account: str, tokens: Sequence[str] | None = None) -> dict[str, int]:
        """Base units of each token (default: every listed one), by mint."""
        owner = await self._ensure(account)
        mints = [mint_of(t) for t in tokens] if tokens else [t.mint for t in TOKENS]
        return await self.chain.token_balances(owner, mints)

    async def shortfall(self, account: str, token: str, amount: float) -> Shortfall | None:
        """Why the wallet cannot pay ``amount`` of ``token`` now, or None if it can."""
        mint = mint_of(token)
        held = (await self.balances(account, [token])).get(mint, 0)
        decimals = decimals_of(mint)
        if held >= to_base_units(amount, decimals):
            return None
        return Shortfall(token, from_base_units(held, decimals), amount)

    async def order_transactions(self, account: str, order_id: str) -> list[ChainTx]:
        return await self.chain.transactions_with_memo(self.address(account), order_id)


def symbol_of(mint: str) -> str | None:
    listed = BY_MINT.get(mint)
    return listed.symbol if listed else None


def wallets_for(settings: Settings, node: Any) -> Wallets:
    """The edge's wallets over the engine's chain: the ChainNode (``node``, or the engine's by name) or
    JSON-RPC when ``OEE_CHAIN_RPC_URL`` is set."""
    from actors.bootstrap import NAMESPACE
    from actors.chain_node import chain_of

    if node is None and not settings.chain_rpc_url:
        import ray

        node = ray.get_actor("chain_node", namespace=NAMESPACE)
    chain, faucet = chain_of(settings, node)
    return Wallets(chain, Keyring(settings.chain_key_seed), faucet, Funding(wallet_usd=settings.wallet_funding_usd))
