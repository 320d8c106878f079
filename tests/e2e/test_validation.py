"""Bad input over real HTTP: a clear 4xx every time, never a 500, and nothing stored."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from tests.engine_process import EngineProcess

GOOD = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1, "orderType": "MARKET"}

CASES = [
    ("empty token", {**GOOD, "tokenIn": ""}, 400, ["tokenIn"]),
    ("zero amount", {**GOOD, "amount": 0}, 400, ["amount"]),
    ("negative amount", {**GOOD, "amount": -5}, 400, ["amount"]),
    ("huge amount", {**GOOD, "amount": 1e300}, 400, ["amount"]),
    ("30-digit amount", {**GOOD, "amount": 10**30}, 400, ["amount"]),
    ("string amount", {**GOOD, "amount": "10"}, 400, ["amount"]),
    ("bool amount", {**GOOD, "amount": True}, 400, ["amount"]),
    ("unknown order type", {**GOOD, "orderType": "STOP"}, 400, ["orderType"]),
    ("same tokens", {**GOOD, "tokenOut": "SOL"}, 400, []),
    ("unknown symbol", {**GOOD, "tokenOut": "DOGE"}, 400, ["tokenOut"]),
    ("array for token", {**GOOD, "tokenIn": ["SOL"]}, 400, ["tokenIn"]),
    ("object for token", {**GOOD, "tokenIn": {"a": 1}}, 400, ["tokenIn"]),
    ("missing amount", {k: v for k, v in GOOD.items() if k != "amount"}, 400, ["amount"]),
    ("missing orderType (never a silent MARKET)", {k: v for k, v in GOOD.items() if k != "orderType"}, 400, ["orderType"]),
    ("LIMIT without limitPrice", {**GOOD, "orderType": "LIMIT"}, 400, ["limitPrice"]),
    ("LIMIT with zero limitPrice", {**GOOD, "orderType": "LIMIT", "limitPrice": 0}, 400, ["limitPrice"]),
    ("slippage out of range", {**GOOD, "slippageBps": 5001}, 400, ["slippageBps"]),
    ("expiry in the past", {**GOOD, "orderType": "LIMIT", "limitPrice": 1, "expiresAt": 1000}, 400, ["expiresAt"]),
    ("pair no venue trades", {**GOOD, "tokenIn": "BONK", "tokenOut": "USDT"}, 400, ["tokenIn"]),
    ("unlisted mint, no pool", {**GOOD, "tokenOut": "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"}, 400, ["tokenIn"]),
]


@pytest.mark.parametrize(("name", "body", "status", "path"), CASES, ids=[c[0] for c in CASES])
async def test_bad_orders_get_a_clear_400(engine: EngineProcess, name: str, body: dict[str, Any], status: int, path: list[str]) -> None:
    async with httpx.AsyncClient(base_url=engine.url) as client:
        response = await client.post("/api/orders/execute", json=body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error"] in ("Validation failed", "Unsupported pair")
    assert payload["details"] and all({"path", "message", "code"} <= set(d) for d in payload["details"])
    assert path in [d["path"] for d in payload["details"]]
    if "no venue" in name:
        assert "BONK/USDT" in payload["message"]


async def test_one_detail_per_problem(engine: EngineProcess) -> None:
    async with httpx.AsyncClient(base_url=engine.url) as client:
        response = await client.post(
            "/api/orders/execute", json={"tokenIn": "", "tokenOut": "DOGE", "amount": -1, "orderType": "X", "extra": 1}
        )
    assert response.status_code == 400
    assert sorted(d["path"][0] for d in response.json()["details"]) == ["amount", "orderType", "tokenIn", "tokenOut"]


RAW = [
    ("malformed JSON", b'{"tokenIn": "SOL",', "application/json", 400, "Invalid JSON"),
    ("NaN literal", b'{"tokenIn":"SOL","tokenOut":"USDC","amount":NaN}', "application/json", 400, "Invalid JSON"),
    ("Infinity literal", b'{"tokenIn":"SOL","tokenOut":"USDC","amount":Infinity}', "application/json", 400, "Invalid JSON"),
    ("1e400", b'{"tokenIn":"SOL","tokenOut":"USDC","amount":1e400}', "application/json", 400, "Validation failed"),
    ("empty body", b"", "application/json", 400, "Invalid JSON"),
    ("array body", b"[1,2]", "application/json", 400, "Validation failed"),
    (
        "nul and emoji",
        '{"tokenIn":"SO\\u0000L","tokenOut":"\U0001f680\u202e","amount":1}'.encode(),
        "application/json",
        400,
        "Validation failed",
    ),
    ("form content type", b"tokenIn=SOL", "application/x-www-form-urlencoded", 415, "Unsupported media type"),
    ("over 16 KiB", b'{"tokenIn":"' + b"A" * 17_000 + b'"}', "application/json", 413, "Payload too large"),
]


@pytest.mark.parametrize(("name", "raw", "content_type", "status", "error"), RAW, ids=[c[0] for c in RAW])
async def test_hostile_bodies(engine: EngineProcess, name: str, raw: bytes, content_type: str, status: int, error: str) -> None:
    async with httpx.AsyncClient(base_url=engine.url) as client:
        response = await client.post("/api/orders/execute", content=raw, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


async def test_nothing_is_stored_for_rejected_orders(engine: EngineProcess) -> None:
    conn = await asyncpg.connect(engine.stores.database_url)
    try:
        before = await conn.fetchval("SELECT count(*) FROM orders")
        async with httpx.AsyncClient(base_url=engine.url) as client:
            for _, body, *_ in CASES:
                assert (await client.post("/api/orders/execute", json=body)).status_code == 400
        assert await conn.fetchval("SELECT count(*) FROM orders") == before
    finally:
        await conn.close()
