"""A small WebSocket client for tests: follow an order's stream to its end."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets


async def follow(
    ws_url: str,
    order_id: str,
    timeout_s: float = 30.0,
    headers: dict[str, str] | None = None,
    query: str = "",
    **options: Any,
) -> tuple[list[dict[str, Any]], int | None]:
    """Every message of the stream, and the close code (an HTTP refusal raises InvalidStatus).
    ``headers``: e.g. an Authorization key; ``query``: e.g. ``?token=``; ``options``: for ``websockets.connect``."""
    messages: list[dict[str, Any]] = []
    url = f"{ws_url}/api/orders/{order_id}/status{query}"
    async with asyncio.timeout(timeout_s):
        async with websockets.connect(url, max_size=2**20, additional_headers=headers, **options) as ws:
            try:
                async for raw in ws:
                    messages.append(json.loads(raw))
            except websockets.ConnectionClosed:
                pass
            await ws.wait_closed()
            return messages, ws.close_code


def statuses(messages: list[dict[str, Any]]) -> list[str]:
    return [m["status"] for m in messages if m.get("type") == "status"]
