"""ChainNode: the one actor that owns the embedded chain (:class:`settlement.embedded.EmbeddedChain`),
as a validator owns its ledger; :class:`ChainClient` is its handle seen as the chain port, and
:func:`settlement_for` wires an executor's settlement to it (or to JSON-RPC when configured)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from ray.exceptions import ActorUnavailableError, RayActorError

from engine.adapters.settlement_store import PostgresSettlementStore
from engine.batching import Coalescer, Pacer
from engine.chain import Chain, ChainTx, ChainUnavailable, RecentBlockhash, SendResult, StatusReport, TxState
from engine.clock import SystemClock
from engine.logs import setup_logging
from engine.models import VenueName
from engine.settings import Settings
from engine.settlement import Faucet, Settlement, SettlingVenue
from settlement.assembler import ChainAssembler, Funding
from settlement.embedded import EmbeddedChain
from settlement.faults import checkpoint_for
from settlement.keys import Keyring
from settlement.rpc import RpcChain


class ChainNode:
    def __init__(self, settings: Settings) -> None:
        setup_logging(settings.log_level)
        self._chain = EmbeddedChain(blockhash_ttl_s=settings.chain_blockhash_ttl_s, slot_s=settings.chain_slot_ms / 1000)

    async def latest_blockhash(self) -> RecentBlockhash:
        return await self._chain.latest_blockhash()

    async def send(self, raw: bytes) -> SendResult:
        return await self._chain.send(raw)

    async def send_many(self, raws: list[bytes]) -> list[tuple[SendResult, ChainTx | None, int]]:
        """Each in turn, as a leader executes what it received; with each, the transaction as executed
        (its final state: an executed transaction never changes) and the block height."""
        answers = []
        for raw in raws:
            result = await self._chain.send(raw)
            executed = await self._chain.transaction(result.signature) if result.signature else None
            answers.append((result, executed, self._chain.height()))
        return answers

    async def transactions_by_signature(self, signatures: list[str]) -> list[ChainTx | None]:
        return [await self._chain.transaction(s) for s in signatures]

    async def statuses(self, signatures: list[str]) -> StatusReport:
        return await self._chain.statuses(signatures)

    async def transaction(self, signature: str) -> ChainTx | None:
        return await self._chain.transaction(signature)

    async def token_balances(self, owner: str, mints: list[str]) -> dict[str, int]:
        return await self._chain.token_balances(owner, mints)

    async def token_balances_many(self, asks: list[tuple[str, tuple[str, ...]]]) -> list[dict[str, int]]:
        return [await self._chain.token_balances(owner, list(mints)) for owner, mints in asks]

    async def transactions_with_memo(self, signer: str, memo: str) -> list[ChainTx]:
        return await self._chain.transactions_with_memo(signer, memo)

    async def ensure_accounts(self, specs: list[tuple[str, str, int, int, bool]]) -> None:
        await self._chain.ensure_accounts(specs)

    def transactions(self, since: int = 0) -> list[ChainTx]:
        """Every transaction executed from index ``since`` on (a scan of the chain)."""
        return self._chain.transactions()[since:]

    def stats(self) -> dict[str, int]:
        return {"transactions": len(self._chain.transactions()), "height": self._chain.height()}


class ChainClient:
    """The ChainNode actor as :class:`engine.chain.Chain` and :class:`engine.settlement.Faucet`. A lost
    or restarting actor is :class:`engine.chain.ChainUnavailable`.

    Sends, status and transaction reads made at about the same time (many orders of one executor) share
    one actor call each (:class:`engine.batching.Coalescer`); a recent blockhash is reused for a second
    (it stays valid for a minute), so an order costs the chain node fewer calls than it makes.
    """

    BLOCKHASH_REUSE_S = 1.0
    EXECUTED_KEPT = 10_000
    """Transactions this client saw executed (their state is final), answered without asking again."""

    def __init__(self, handle: Any, window_s: float = 0.0) -> None:
        self.handle = handle
        self._sends: Coalescer[bytes, SendResult] = Coalescer(self._send_many, max_batch=256, max_in_flight=4, pacer=Pacer(window_s))
        self._statuses: Coalescer[str, tuple[int, TxState]] = Coalescer(
            self._statuses_many, max_batch=512, max_in_flight=4, pacer=Pacer(window_s)
        )
        self._reads: Coalescer[str, ChainTx | None] = Coalescer(self._read_many, max_batch=256, max_in_flight=4, pacer=Pacer(window_s))
        self._balances: Coalescer[tuple[str, tuple[str, ...]], dict[str, int]] = Coalescer(
            self._balances_many, max_batch=256, max_in_flight=4, pacer=Pacer(window_s)
        )
        self._blockhash: tuple[float, RecentBlockhash] | None = None
        self._executed: dict[str, tuple[ChainTx, int]] = {}

    def batching(self) -> dict[str, Coalescer[Any, Any]]:
        return {"sends": self._sends, "statuses": self._statuses, "reads": self._reads, "balances": self._balances}

    async def _call(self, ref: Any) -> Any:
        try:
            return await ref
        except (RayActorError, ActorUnavailableError) as exc:
            raise ChainUnavailable(f"chain node unreachable ({type(exc).__name__})") from exc

    async def latest_blockhash(self) -> RecentBlockhash:
        now = time.monotonic()
        if self._blockhash is None or now - self._blockhash[0] > self.BLOCKHASH_REUSE_S:
            recent: RecentBlockhash = await self._call(self.handle.latest_blockhash.remote())
            self._blockhash = (now, recent)
        return self._blockhash[1]

    async def send(self, raw: bytes) -> SendResult:
        return await self._sends.submit(raw)

    async def _send_many(self, raws: list[bytes]) -> list[SendResult]:
        answers: list[tuple[SendResult, ChainTx | None, int]] = await self._call(self.handle.send_many.remote(raws))
        for _, executed, height in answers:
            if executed is not None:
                self._executed[executed.signature] = (executed, height)
                while len(self._executed) > self.EXECUTED_KEPT:
                    del self._executed[next(iter(self._executed))]
        return [result for result, _, _ in answers]

    async def statuses(self, signatures: Sequence[str]) -> StatusReport:
        if not signatures:
            report: StatusReport = await self._call(self.handle.statuses.remote([]))
            return report
        known = [self._executed.get(s) for s in signatures]
        if all(k is not None for k in known):  # executed: final, no need to ask again
            final = [k for k in known if k is not None]
            states = tuple(TxState.FAILED if tx.error else TxState.LANDED for tx, _ in final)
            return StatusReport(max(height for _, height in final), states)
        answers = await asyncio.gather(*(self._statuses.submit(s) for s in signatures))
        return StatusReport(min(height for height, _ in answers), tuple(state for _, state in answers))

    async def _statuses_many(self, signatures: list[str]) -> list[tuple[int, TxState]]:
        report: StatusReport = await self._call(self.handle.statuses.remote(signatures))
        return [(report.block_height, state) for state in report.states]

    async def transaction(self, signature: str) -> ChainTx | None:
        known = self._executed.get(signature)
        if known is not None:
            return known[0]
        return await self._reads.submit(signature)

    async def _read_many(self, signatures: list[str]) -> list[ChainTx | None]:
        result: list[ChainTx | None] = await self._call(self.handle.transactions_by_signature.remote(signatures))
        return result

    async def token_balances(self, owner: str, mints: Sequence[str]) -> dict[str, int]:
        return await self._balances.submit((owner, tuple(mints)))

    async def _balances_many(self, asks: list[tuple[str, tuple[str, ...]]]) -> list[dict[str, int]]:
        result: list[dict[str, int]] = await self._call(self.handle.token_balances_many.remote(asks))
        return result

    async def ensure_accounts(self, specs: Sequence[tuple[str, str, int, int, bool]]) -> None:
        await self._call(self.handle.ensure_accounts.remote(list(specs)))

    async def transactions_with_memo(self, signer: str, memo: str) -> list[ChainTx]:
        result: list[ChainTx] = await self._call(self.handle.transactions_with_memo.remote(signer, memo))
        return result


def chain_of(settings: Settings, node: Any) -> tuple[Chain, Faucet | None]:
    """The chain port, and the faucet when the chain is the embedded one."""
    if settings.chain_rpc_url:
        rpc = RpcChain(settings.chain_rpc_url)
        return rpc, rpc if settings.chain_rpc_faucet else None
    if node is None:
        raise ValueError("no chain: start a ChainNode or set OEE_CHAIN_RPC_URL")
    client = ChainClient(node, settings.batch_window_ms / 1000)
    return client, client


def settlement_for(settings: Settings, pool: asyncpg.Pool, venues: Mapping[VenueName, SettlingVenue], node: Any) -> Settlement:
    """An executor's settlement: the chain, the store in its PostgreSQL, the assembler over its venues."""
    chain, faucet = chain_of(settings, node)
    assembler = ChainAssembler(Keyring(settings.chain_key_seed), venues, chain, faucet, Funding(wallet_usd=settings.wallet_funding_usd))
    return Settlement(
        chain=chain,
        store=PostgresSettlementStore(pool),
        assembler=assembler,
        clock=SystemClock(),
        poll_s=settings.chain_poll_ms / 1000,
        resend_s=settings.chain_resend_ms / 1000,
        checkpoint=checkpoint_for(settings),
    )
