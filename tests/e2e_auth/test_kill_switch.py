"""The kill switch on the running engine: a halted pair refuses submissions (503 with the reason) and its
waiting LIMIT orders do not fire; other pairs trade; resuming lets them fire; a global halt stops all;
every change is recorded with who made it. Also the keys CLI against the same database."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx

from runtime.process import ROOT
from tests.e2e_auth.conftest import Accounts, bearer, resume_everything
from tests.engine_process import EngineProcess


async def best_price(client: httpx.AsyncClient, token_in: str, token_out: str) -> float:
    response = await client.post(
        "/api/orders/execute", json={"tokenIn": token_in, "tokenOut": token_out, "amount": 0.5, "orderType": "MARKET"}
    )
    assert response.status_code == 202, response.text
    order_id = response.json()["orderId"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        order = (await client.get(f"/api/orders/{order_id}")).json()
        decision = order.get("routingDecision")
        if decision:  # the seed's shape: one <venue>Quote per venue, netPrice after fees
            return float(max(q["netPrice"] for key, q in decision.items() if key.endswith("Quote")))
        await asyncio.sleep(0.05)
    raise AssertionError("no routing decision")


async def wait_status(client: httpx.AsyncClient, order_id: str, wanted: set[str], timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        order: dict[str, Any] = (await client.get(f"/api/orders/{order_id}")).json()
        if order["status"] in wanted:
            return order
        assert time.monotonic() < deadline, f"{order_id} not {wanted}: {order}"
        await asyncio.sleep(0.05)


async def test_a_pair_halt_refuses_and_holds_its_orders_until_resumed(accounts: Accounts, admin: httpx.AsyncClient) -> None:
    trader = await accounts.new("halt")
    try:
        price = await best_price(trader.client, "JUP", "USDC")
        body = {"tokenIn": "JUP", "tokenOut": "USDC", "amount": 5, "orderType": "LIMIT", "limitPrice": price * 1.05}
        order_id = (await trader.client.post("/api/orders/execute", json=body)).json()["orderId"]
        await wait_status(trader.client, order_id, {"waiting"})
        halted = await admin.put("/api/admin/trading-state", json={"state": "halted", "reason": "JUP oracle incident", "pair": "usdc/jup"})
        assert halted.status_code == 200 and halted.json()["pair"] == "JUP/USDC" and halted.json()["changedBy"] == "admin"
        for venue in ("raydium", "meteora"):  # the price now meets the limit: the order would fire
            moved = await admin.post("/api/sim/price", json={"venue": venue, "base": "JUP", "quote": "USDC", "percent": 12})
            assert moved.status_code in (200, 400), moved.text  # meteora lists JUP/SOL, not JUP/USDC
        refused = await trader.client.post(
            "/api/orders/execute", json={"tokenIn": "USDC", "tokenOut": "JUP", "amount": 5, "orderType": "MARKET"}
        )
        assert refused.status_code == 503 and refused.json() == {"error": "Trading halted", "message": "JUP oracle incident"}
        assert (
            await trader.client.post(
                "/api/orders/execute", json={"tokenIn": "SOL", "tokenOut": "USDC", "amount": 0.5, "orderType": "MARKET"}
            )
        ).status_code == 202
        await asyncio.sleep(2.0)  # forty watcher ticks with the condition met
        assert (await trader.client.get(f"/api/orders/{order_id}")).json()["status"] == "waiting"
        state = (await admin.get("/api/admin/trading-state")).json()
        assert state["state"] == "active" and [p["pair"] for p in state["haltedPairs"]] == ["JUP/USDC"]
        resumed = await admin.put("/api/admin/trading-state", json={"state": "active", "reason": "oracle back", "pair": "JUP/USDC"})
        assert resumed.status_code == 200
        done = await wait_status(trader.client, order_id, {"confirmed", "failed", "expired", "cancelled"})
        assert done["status"] == "confirmed", done
        history = (await admin.get("/api/admin/trading-state")).json()["history"]
        assert [(h["state"], h.get("pair"), h["reason"], h["changedBy"]) for h in history[:2]] == [
            ("active", "JUP/USDC", "oracle back", "admin"),
            ("halted", "JUP/USDC", "JUP oracle incident", "admin"),
        ]
    finally:
        await resume_everything(admin)
        for venue in ("raydium",):
            await admin.post("/api/sim/price", json={"venue": venue, "base": "JUP", "quote": "USDC", "percent": -10.7})


async def test_a_global_halt_refuses_every_submission_with_its_reason(accounts: Accounts, admin: httpx.AsyncClient) -> None:
    trader = await accounts.new("global")
    try:
        halted = await admin.put("/api/admin/trading-state", json={"state": "halted", "reason": "exchange-wide incident 9"})
        assert halted.status_code == 200 and "pair" not in halted.json()
        for pair in (("SOL", "USDC"), ("JUP", "USDC"), ("USDC", "USDT")):
            response = await trader.client.post(
                "/api/orders/execute", json={"tokenIn": pair[0], "tokenOut": pair[1], "amount": 1, "orderType": "MARKET"}
            )
            assert response.status_code == 503 and response.json()["message"] == "exchange-wide incident 9", response.text
        state = (await admin.get("/api/admin/trading-state")).json()
        assert (state["state"], state["reason"], state["changedBy"]) == ("halted", "exchange-wide incident 9", "admin")
        assert (await admin.put("/api/admin/trading-state", json={"state": "paused", "reason": "x"})).status_code == 400
        assert (await admin.put("/api/admin/trading-state", json={"state": "halted", "reason": ""})).status_code == 400
        assert (await admin.put("/api/admin/trading-state", json={"state": "halted", "reason": "x", "pair": "SOL"})).status_code == 400
    finally:
        await resume_everything(admin)
    assert (
        await trader.client.post("/api/orders/execute", json={"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1, "orderType": "MARKET"})
    ).status_code == 202


def _cli(engine: EngineProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OEE_")}
    env.update(
        OEE_DATABASE_URL=engine.stores.database_url, OEE_REDIS_URL=engine.stores.redis_url, OEE_REDIS_PREFIX=engine.stores.redis_prefix
    )
    return subprocess.run([sys.executable, "-m", "runtime", "keys", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


async def test_the_cli_creates_lists_and_revokes_keys(engine: EngineProcess) -> None:
    created = await asyncio.to_thread(_cli, engine, "create", "cli-made", "--scope", "read")
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert body["account"] == "cli-made" and body["scopes"] == ["read"] and body["createdBy"] == "cli" and body["key"].startswith("oee_")
    async with httpx.AsyncClient(base_url=engine.url, headers=bearer(body["key"]), timeout=30) as client:
        assert (await client.get("/api/orders")).status_code == 200
        listed = await asyncio.to_thread(_cli, engine, "list", "--account", "cli-made")
        assert [json.loads(line)["keyId"] for line in listed.stdout.splitlines()] == [body["keyId"]] and "oee_" not in listed.stdout
        revoked = await asyncio.to_thread(_cli, engine, "revoke", body["keyId"])
        assert revoked.returncode == 0, revoked.stderr
        assert [(await client.get("/api/orders")).status_code for _ in range(4)] == [401] * 4
    assert (await asyncio.to_thread(_cli, engine, "create", "Bad Name")).returncode == 2
