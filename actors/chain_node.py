"""ChainNode: the one actor that owns the embedded chain (:class:`settlement.embedded.EmbeddedChain`),
as a validator owns its ledger; :class:`ChainClient` is its handle seen as the chain port."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.chain import ChainTx, RecentBlockhash, SendResult, StatusReport
from engine.logs import setup_logging
from engine.settings import Settings
from settlement.embedded import EmbeddedChain


class ChainNode:
    def __init__(self, settings: Settings) -> None:
        setup_logging(settings.log_level)
        self._chain = EmbeddedChain(blockhash_ttl_s=settings.chain_blockhash_ttl_s, slot_s=settings.chain_slot_ms / 1000)

    async def latest_blockhash(self) -> RecentBlockhash:
        return await self._chain.latest_blockhash()

    async def send(self, raw: bytes) -> SendResult:
        return await self._chain.send(raw)

    async def statuses(self, signatures: list[str]) -> StatusReport:
        return await self._chain.statuses(signatures)

    async def transaction(self, signature: str) -> ChainTx | None:
        return await self._chain.transaction(signature)

    async def token_balances(self, owner: str, mints: list[str]) -> dict[str, int]:
        return await self._chain.token_balances(owner, mints)

    async def ensure_accounts(self, specs: list[tuple[str, str, int, int, bool]]) -> None:
        await self._chain.ensure_accounts(specs)

    def transactions(self, since: int = 0) -> list[ChainTx]:
        """Every transaction executed from index ``since`` on (a scan of the chain)."""
        return self._chain.transactions()[since:]

    def stats(self) -> dict[str, int]:
        return {"transactions": len(self._chain.transactions()), "height": self._chain.height()}


class ChainClient:
    """The ChainNode actor as :class:`engine.chain.Chain` and :class:`engine.settlement.Faucet`."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def latest_blockhash(self) -> RecentBlockhash:
        result: RecentBlockhash = await self.handle.latest_blockhash.remote()
        return result

    async def send(self, raw: bytes) -> SendResult:
        result: SendResult = await self.handle.send.remote(raw)
        return result

    async def statuses(self, signatures: Sequence[str]) -> StatusReport:
        result: StatusReport = await self.handle.statuses.remote(list(signatures))
        return result

    async def transaction(self, signature: str) -> ChainTx | None:
        result: ChainTx | None = await self.handle.transaction.remote(signature)
        return result

    async def token_balances(self, owner: str, mints: Sequence[str]) -> dict[str, int]:
        result: dict[str, int] = await self.handle.token_balances.remote(owner, list(mints))
        return result

    async def ensure_accounts(self, specs: Sequence[tuple[str, str, int, int, bool]]) -> None:
        await self.handle.ensure_accounts.remote(list(specs))
