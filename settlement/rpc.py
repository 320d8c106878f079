"""The chain over Solana JSON-RPC (a cluster or a local test validator, ``OEE_CHAIN_RPC_URL``).

Implements :class:`engine.chain.Chain` with the methods ``getLatestBlockhash``, ``sendTransaction``,
``getBlockHeight``, ``getSignatureStatuses``, ``getTransaction``, ``getMultipleAccounts`` (token
accounts, ``jsonParsed``; balances asked at about the same time share one call) and
``getSignaturesForAddress``, at ``confirmed`` commitment (and a development faucet, ``oee_ensureAccounts``,
when ``OEE_CHAIN_RPC_FAUCET`` says the node has one). A refused send is told apart by the error the node names in ``data.err``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Sequence
from typing import Any

import httpx
from solders.transaction import Transaction

from engine.batching import Coalescer
from engine.chain import ChainTx, ChainUnavailable, RecentBlockhash, SendOutcome, SendResult, StatusReport, TokenChange, TxState
from settlement.keys import token_account
from settlement.swap_tx import memo_of

_COMMITMENT = {"commitment": "confirmed"}


class RpcError(RuntimeError):
    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(f"{method}: {error.get('message')}")
        self.method = method
        self.error = error


class RpcChain:
    def __init__(self, url: str, timeout_s: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        self.url = url
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._ids = itertools.count(1)
        self._balances: Coalescer[str, int] = Coalescer(self._balances_many, max_batch=100, max_in_flight=4)

    async def _call(self, method: str, *params: Any) -> Any:
        payload = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        try:
            response = await self._client.post(self.url, json=payload)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ChainUnavailable(f"{method}: {type(exc).__name__}: {exc}") from exc
        body = response.json()
        if "error" in body:
            raise RpcError(method, body["error"])
        return body["result"]

    async def latest_blockhash(self) -> RecentBlockhash:
        value = (await self._call("getLatestBlockhash", _COMMITMENT))["value"]
        return RecentBlockhash(value["blockhash"], int(value["lastValidBlockHeight"]))

    async def send(self, raw: bytes) -> SendResult:
        try:
            await self._call("sendTransaction", base64.b64encode(raw).decode(), {"encoding": "base64", "preflightCommitment": "confirmed"})
        except RpcError as exc:
            data = exc.error.get("data") or {}
            err = str(data.get("err") if isinstance(data, dict) else data) + " " + str(exc.error.get("message"))
            if "AlreadyProcessed" in err or "already been processed" in err:
                return SendResult(SendOutcome.DUPLICATE)
            if "BlockhashNotFound" in err or "Blockhash not found" in err:
                return SendResult(SendOutcome.BLOCKHASH_NOT_FOUND, err)
            return SendResult(SendOutcome.REJECTED, err)
        return SendResult(SendOutcome.ACCEPTED)

    async def statuses(self, signatures: Sequence[str]) -> StatusReport:
        height = int(await self._call("getBlockHeight", _COMMITMENT))
        value = (await self._call("getSignatureStatuses", list(signatures), {"searchTransactionHistory": True}))["value"]
        states = []
        for status in value:
            if status is None or status.get("confirmationStatus") not in ("confirmed", "finalized"):
                states.append(TxState.UNKNOWN)
            else:
                states.append(TxState.FAILED if status.get("err") else TxState.LANDED)
        return StatusReport(height, tuple(states))

    async def transaction(self, signature: str) -> ChainTx | None:
        result = await self._call(
            "getTransaction", signature, {"encoding": "base64", "commitment": "confirmed", "maxSupportedTransactionVersion": 0}
        )
        if result is None:
            return None
        tx = Transaction.from_bytes(base64.b64decode(result["transaction"][0]))
        keys = [str(k) for k in tx.message.account_keys]
        meta = result.get("meta") or {}
        pre = {b["accountIndex"]: b for b in meta.get("preTokenBalances") or []}
        post = {b["accountIndex"]: b for b in meta.get("postTokenBalances") or []}
        changes = []
        for index in sorted(set(pre) | set(post)):
            entry = post.get(index) or pre[index]
            before = int(pre[index]["uiTokenAmount"]["amount"]) if index in pre else 0
            after = int(post[index]["uiTokenAmount"]["amount"]) if index in post else 0
            changes.append(TokenChange(keys[index], entry.get("owner", ""), entry["mint"], before, after))
        signers = tuple(keys[: tx.message.header.num_required_signatures])
        error = meta.get("err")
        return ChainTx(signature, int(result["slot"]), signers, tuple(changes), memo_of(tx.message), str(error) if error else None)

    async def token_balances(self, owner: str, mints: Sequence[str]) -> dict[str, int]:
        found = await asyncio.gather(*(self._balances.submit(str(token_account(owner, mint))) for mint in mints))
        return dict(zip(mints, found, strict=True))

    async def _balances_many(self, accounts: list[str]) -> list[int]:
        """Token account balances, base units (0 for an account that does not exist)."""
        config = {"encoding": "jsonParsed", **_COMMITMENT}
        values = (await self._call("getMultipleAccounts", accounts, config))["value"]
        return [int(v["data"]["parsed"]["info"]["tokenAmount"]["amount"]) if v is not None else 0 for v in values]

    async def transactions_with_memo(self, signer: str, memo: str) -> list[ChainTx]:
        """``getSignaturesForAddress`` of the signer (its last 1,000), then each one whose memo names ``memo``."""
        entries = await self._call("getSignaturesForAddress", signer, {"limit": 1000, "commitment": "confirmed"})
        found = []
        for entry in entries:
            if entry.get("memo") and entry["memo"].endswith(memo):  # the node writes "[len] text"
                tx = await self.transaction(entry["signature"])
                if tx is not None and tx.memo == memo:
                    found.append(tx)
        return found

    async def ensure_accounts(self, specs: Sequence[tuple[str, str, int, int, bool]]) -> None:
        """A development validator's faucet (``oee_ensureAccounts``, served by the test chain server)."""
        await self._call("oee_ensureAccounts", [list(spec) for spec in specs])

    async def close(self) -> None:
        await self._client.aclose()
