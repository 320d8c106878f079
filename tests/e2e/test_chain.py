"""The chain at the edge, over real HTTP: the wallet's balances move by what the landed transaction says,
a transaction is found by its signature, an order the wallet cannot pay is refused before the 202."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.test_orders import submit
from tests.e2e.wsclient import follow
from tests.engine_process import EngineProcess


async def test_the_wallet_pays_what_the_landed_transaction_says(engine: EngineProcess) -> None:
    async with httpx.AsyncClient(base_url=engine.url) as client:
        before = (await client.get("/api/wallet")).json()
        order_id = await submit(client, {"tokenIn": "USDC", "tokenOut": "JUP", "amount": 25, "orderType": "MARKET"})
        await follow(engine.ws_url, order_id)
        order = (await client.get(f"/api/orders/{order_id}")).json()
        tx = (await client.get(f"/api/chain/tx/{order['txHash']}")).json()
        after = (await client.get("/api/wallet")).json()
    assert order["status"] == "confirmed", order
    assert before["address"] == after["address"] and tx["signers"][0] == before["address"]
    held = {b["token"]: b["amount"] for b in before["balances"]}
    now = {b["token"]: b["amount"] for b in after["balances"]}
    mine = {c["token"]: c["change"] for c in tx["tokenChanges"] if c["owner"] == before["address"]}
    assert mine["USDC"] == pytest.approx(-25.0)
    assert mine["JUP"] == pytest.approx(order["executionAmount"])
    # other orders of the session may trade USDC at the same time: JUP is this test's own
    assert now["JUP"] - held["JUP"] == pytest.approx(order["executionAmount"], rel=1e-6)
    assert {"SOL", "USDC"} <= set(held) and all(b["decimals"] in (5, 6, 9) for b in before["balances"])


async def test_an_unknown_or_malformed_signature_is_a_clear_4xx(engine: EngineProcess) -> None:
    async with httpx.AsyncClient(base_url=engine.url) as client:
        unknown = await client.get("/api/chain/tx/" + "1" * 64)
        malformed = await client.get("/api/chain/tx/not-a-signature")
        too_long = await client.get("/api/chain/tx/" + "A" * 200)
        no_order = await client.get("/api/chain/orders/order_1764000000000_00000000")
    assert unknown.status_code == 404 and unknown.json()["error"] == "Not found"
    assert malformed.status_code == 400 and too_long.status_code == 400
    assert no_order.status_code == 404


async def test_an_order_the_wallet_cannot_pay_is_refused_before_the_202(engine: EngineProcess) -> None:
    async with httpx.AsyncClient(base_url=engine.url) as client:
        sol = next(b for b in (await client.get("/api/wallet")).json()["balances"] if b["token"] == "SOL")
        response = await client.post(
            "/api/orders/execute", json={"tokenIn": "SOL", "tokenOut": "USDC", "amount": sol["amount"] * 2, "orderType": "MARKET"}
        )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "Insufficient funds" and "SOL" in body["message"] and "the wallet holds" in body["message"]
