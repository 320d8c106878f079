"""Counting on the chain, not by asking the engine: landed transactions per orderId, read from memos."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from engine.chain import ChainTx


def landed_per_order(transactions: Iterable[ChainTx]) -> Counter[str]:
    """How many successful transactions carry each memo (an orderId)."""
    return Counter(tx.memo for tx in transactions if tx.error is None and tx.memo)


def double_landed(transactions: Iterable[ChainTx]) -> dict[str, int]:
    """Orders with more than one landed transaction (must be empty)."""
    return {order_id: n for order_id, n in landed_per_order(transactions).items() if n > 1}


async def scan_node(node: Any) -> list[ChainTx]:
    """Every transaction the ChainNode actor's chain executed (``EngineActors.chain``)."""
    found: list[ChainTx] = await node.transactions.remote()
    return found
