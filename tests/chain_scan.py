"""Counting on the chain, not by asking the engine: landed transactions per orderId, read from memos."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from engine.chain import ChainTx
from engine.ids import parse_order_id


def landed_per_order(transactions: Iterable[ChainTx]) -> Counter[str]:
    """How many successful transactions carry each orderId as their memo (the venues' market-maker
    transfers carry other memos)."""
    return Counter(tx.memo for tx in transactions if tx.error is None and tx.memo and parse_order_id(tx.memo) is not None)


def double_landed(transactions: Iterable[ChainTx]) -> dict[str, int]:
    """Orders with more than one landed transaction (must be empty)."""
    return {order_id: n for order_id, n in landed_per_order(transactions).items() if n > 1}


async def scan_node(node: Any) -> list[ChainTx]:
    """Every transaction the ChainNode actor's chain executed (``EngineActors.chain``)."""
    found: list[ChainTx] = await node.transactions.remote()
    return found


async def scan_rpc(url: str) -> list[ChainTx]:
    """Every transaction the test chain server (tests/chain_rpc_server.py) executed: signature, slot, memo, error."""
    import httpx

    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "oee_scan", "params": [0]})
        response.raise_for_status()
        return [ChainTx(t["signature"], t["slot"], (), (), t["memo"], t["err"]) for t in response.json()["result"]]
