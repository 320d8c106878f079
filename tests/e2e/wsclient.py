"""A small WebSocket client for tests: follow an order's stream to its end."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets


async def follow(
    ws_url: str, order_id: str, timeout_s: float = 30.0, headers: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """Every message of the stream, and the close code (``headers``: e.g. an Authorization key)."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        async with websockets.connect(f"{ws_url}/api/orders/{order_id}/status", max_size=2**20, additional_headers=headers) as ws:
            try:
                async for raw in ws:
                    messages.append(json.loads(raw))
            except websockets.ConnectionClosed:
                pass
            await ws.wait_closed()
            return messages, ws.close_code


def statuses(messages: list[dict[str, Any]]) -> list[str]:
    return [m["status"] for m in messages if m.get("type") == "status"]
