"""A small Solana JSON-RPC server over the embedded chain: only the methods :mod:`settlement.rpc` calls,
answered in the cluster's formats. The RPC adapter is contract-tested against it, and a test can run it
as its own process (``python -m tests.chain_rpc_server --port N``) so the chain outlives an engine."""

from __future__ import annotations

import argparse
import asyncio
import base64
from typing import Any

from aiohttp import web
from solders.transaction import Transaction

from engine.chain import SendOutcome, TxState
from settlement.embedded import EmbeddedChain
from settlement.swap_tx import TOKEN_PROGRAM


class ChainRpc:
    def __init__(self, chain: EmbeddedChain) -> None:
        self.chain = chain

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        method, params = body.get("method"), body.get("params") or []
        handler = getattr(self, f"rpc_{method}", None)
        if handler is None:
            error = {"code": -32601, "message": "Method not found"}
            return web.json_response({"jsonrpc": "2.0", "id": body.get("id"), "error": error})
        try:
            result = await handler(*params)
        except _RpcFault as fault:
            return web.json_response({"jsonrpc": "2.0", "id": body.get("id"), "error": fault.error})
        return web.json_response({"jsonrpc": "2.0", "id": body.get("id"), "result": result})

    def _context(self) -> dict[str, Any]:
        return {"slot": self.chain.height(), "apiVersion": "2.1.0"}

    async def rpc_getLatestBlockhash(self, *_: Any) -> dict[str, Any]:
        recent = await self.chain.latest_blockhash()
        return {"context": self._context(), "value": {"blockhash": recent.blockhash, "lastValidBlockHeight": recent.last_valid_height}}

    async def rpc_getBlockHeight(self, *_: Any) -> int:
        return self.chain.height()

    async def rpc_sendTransaction(self, encoded: str, config: dict[str, Any] | None = None) -> str:
        raw = base64.b64decode(encoded)
        result = await self.chain.send(raw)
        if result.outcome is SendOutcome.BLOCKHASH_NOT_FOUND:
            raise _RpcFault(-32002, "Transaction simulation failed: Blockhash not found", {"err": "BlockhashNotFound", "logs": []})
        if result.outcome is SendOutcome.DUPLICATE:
            raise _RpcFault(
                -32002, "Transaction simulation failed: This transaction has already been processed", {"err": "AlreadyProcessed"}
            )
        if result.outcome is SendOutcome.REJECTED:
            raise _RpcFault(-32003, f"Transaction rejected: {result.error}", {"err": result.error})
        return str(Transaction.from_bytes(raw).signatures[0])

    async def rpc_getSignatureStatuses(self, signatures: list[str], config: dict[str, Any] | None = None) -> dict[str, Any]:
        report = await self.chain.statuses(signatures)
        value: list[dict[str, Any] | None] = []
        for signature, state in zip(signatures, report.states, strict=True):
            tx = await self.chain.transaction(signature)
            if state is TxState.UNKNOWN or tx is None:
                value.append(None)
            else:
                err = {"InstructionError": tx.error} if tx.error else None
                value.append({"slot": tx.slot, "confirmations": None, "err": err, "confirmationStatus": "confirmed"})
        return {"context": self._context(), "value": value}

    async def rpc_getTransaction(self, signature: str, config: dict[str, Any] | None = None) -> dict[str, Any] | None:
        tx = await self.chain.transaction(signature)
        raw = self.chain.raw_transaction(signature)
        if tx is None or raw is None:
            return None
        keys = [str(k) for k in Transaction.from_bytes(raw).message.account_keys]

        def balances(post: bool) -> list[dict[str, Any]]:
            return [
                {
                    "accountIndex": keys.index(c.account),
                    "mint": c.mint,
                    "owner": c.owner,
                    "uiTokenAmount": {"amount": str(c.post if post else c.pre)},
                }
                for c in tx.token_changes
            ]

        meta = {"err": tx.error, "fee": 5000, "preTokenBalances": balances(False), "postTokenBalances": balances(True)}
        return {"slot": tx.slot, "transaction": [base64.b64encode(raw).decode(), "base64"], "meta": meta}

    async def rpc_getSignaturesForAddress(self, address: str, config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        limit = int((config or {}).get("limit", 1000))
        found = [tx for tx in reversed(self.chain.transactions()) if address in tx.signers][:limit]
        return [
            {"signature": tx.signature, "slot": tx.slot, "err": tx.error, "memo": f"[{len(tx.memo)}] {tx.memo}" if tx.memo else None}
            for tx in found
        ]

    async def rpc_oee_scan(self, since: int = 0) -> list[dict[str, Any]]:
        """Every transaction executed, from index ``since`` (what a test counts landed swaps with)."""
        return [{"signature": tx.signature, "slot": tx.slot, "memo": tx.memo, "err": tx.error} for tx in self.chain.transactions()[since:]]

    async def rpc_oee_ensureAccounts(self, specs: list[list[Any]]) -> None:
        await self.chain.ensure_accounts([(str(o), str(m), int(d), int(a), bool(f)) for o, m, d, a, f in specs])

    async def rpc_getMultipleAccounts(self, accounts: list[str], config: dict[str, Any] | None = None) -> dict[str, Any]:
        """Token accounts only, as ``jsonParsed`` gives them (``null`` for an account the chain lacks)."""
        values: list[dict[str, Any] | None] = []
        for account in accounts:
            state = self.chain.token_account_state(account)
            if not state:
                values.append(None)
                continue
            [(owner, mint, amount)] = state
            info = {"mint": mint, "owner": owner, "tokenAmount": {"amount": str(amount)}}
            values.append({"data": {"program": "spl-token", "parsed": {"type": "account", "info": info}}, "owner": str(TOKEN_PROGRAM)})
        return {"context": self._context(), "value": values}


class _RpcFault(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.error = {"code": code, "message": message, **({"data": data} if data is not None else {})}


def make_app(chain: EmbeddedChain) -> web.Application:
    app = web.Application()
    app.router.add_post("/", ChainRpc(chain).handle)
    return app


async def serve(port: int, ttl_s: float) -> None:
    runner = web.AppRunner(make_app(EmbeddedChain(blockhash_ttl_s=ttl_s)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ttl", type=float, default=60.0, help="seconds a blockhash stays valid")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.ttl))
