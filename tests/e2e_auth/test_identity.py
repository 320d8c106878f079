"""Identity and tenancy over real HTTP and WebSocket: keys, scopes, 401/403, accounts that cannot see each
other, idempotency per account, revocation at once, CORS and the WebSocket handshake."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import asyncpg
import httpx
import websockets

from tests.e2e.wsclient import follow as ws_follow
from tests.e2e.wsclient import statuses
from tests.e2e_auth.conftest import ADMIN_KEY, ORIGIN, Accounts, bearer
from tests.engine_process import EngineProcess

ORDER = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1, "orderType": "MARKET"}
WAITING = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1, "orderType": "LIMIT", "limitPrice": 1e9}  # never fires


async def follow(
    engine: EngineProcess, order_id: str, key: str | None, timeout_s: float = 30, query: str = "", **options: Any
) -> tuple[list[dict[str, Any]], int | None]:
    """Every message of the order's stream and the close code, presenting ``key``."""
    return await ws_follow(engine.ws_url, order_id, timeout_s, bearer(key) if key else None, query, **options)


async def handshake_status(url: str, **options: Any) -> int | None:
    """The HTTP status of a refused handshake (None if the socket opened)."""
    try:
        async with websockets.connect(url, **options):
            return None
    except websockets.InvalidStatus as exc:
        return int(exc.response.status_code)


async def test_health_and_docs_need_no_key_and_everything_else_does(engine: EngineProcess) -> None:
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as client:
        for path in ("/health", "/livez", "/readyz", "/docs", "/openapi.json", "/redoc"):
            assert (await client.get(path)).status_code == 200, path
        ready = (await client.get("/readyz")).json()
        assert set(ready["checks"]) == {"redis", "postgres", "ray"} and set(ready["venues"]) == {"raydium", "meteora"}
        assert all(v["state"] == "closed" and "lastError" not in v for v in ready["venues"].values())
        answers = [
            await client.get("/api/orders"),
            await client.get("/api/orders/order_1764000000000_deadbeef"),
            await client.post("/api/orders/execute", json=ORDER),
            await client.delete("/api/orders/order_1764000000000_deadbeef"),
            await client.get("/api/keys"),
            await client.get("/api/admin/trading-state"),
        ]
        for response in answers:
            assert response.status_code == 401 and response.json()["error"] == "Unauthorized", response.text
            assert response.headers["www-authenticate"].startswith("Bearer")
        junk = await client.get("/api/orders", headers=bearer("oee_0123456789abcdef_" + "x" * 43))
        assert junk.status_code == 401 and 'error="invalid_token"' in junk.headers["www-authenticate"]
        basic = await client.get("/api/orders", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
        assert basic.status_code == 401
    print(f"\nno key: {len(answers)} protected calls -> 401 with WWW-Authenticate: Bearer; health, docs and schema open")


async def test_scopes_read_trade_admin(accounts: Accounts) -> None:
    reader = await accounts.new("reader", ("read",))
    trader = await accounts.new("trader", ("trade",))
    refused = await reader.client.post("/api/orders/execute", json=ORDER)
    assert refused.status_code == 403 and refused.json() == {"error": "Forbidden", "message": "this key lacks the trade scope"}
    assert (await reader.client.get("/api/orders")).status_code == 200
    for call in (
        trader.client.get("/api/keys"),
        trader.client.post("/api/keys", json={"account": "x", "scopes": ["admin"]}),
        trader.client.put("/api/admin/trading-state", json={"state": "halted", "reason": "no"}),
        trader.client.get(f"/api/admin/accounts/{trader.name}/limits"),
        trader.client.post("/api/sim/price", json={"venue": "raydium", "base": "SOL", "quote": "USDC", "percent": 1}),
    ):
        response = await call
        assert response.status_code == 403 and response.json()["error"] == "Forbidden", response.text
    assert (await trader.client.post("/api/orders/execute", json=ORDER)).status_code == 202


async def test_two_accounts_cannot_see_cancel_or_follow_each_others_orders(
    engine: EngineProcess, accounts: Accounts, admin: httpx.AsyncClient
) -> None:
    alice = await accounts.new("alice")
    bob = await accounts.new("bob")
    mine = (await alice.client.post("/api/orders/execute", json=WAITING)).json()["orderId"]
    done = (await alice.client.post("/api/orders/execute", json=ORDER)).json()["orderId"]
    unknown = "order_1764000000000_deadbeef"
    for order_id in (mine, done):
        seen, missing = await bob.client.get(f"/api/orders/{order_id}"), await bob.client.get(f"/api/orders/{unknown}")
        assert (
            (seen.status_code, seen.json())
            == (missing.status_code, missing.json())
            == (404, {"error": "Not found", "message": "order not found"})
        )
        cancel, cancel_missing = await bob.client.delete(f"/api/orders/{order_id}"), await bob.client.delete(f"/api/orders/{unknown}")
        assert (cancel.status_code, cancel.json()) == (cancel_missing.status_code, cancel_missing.json()) == (404, missing.json())
        messages, code = await follow(engine, order_id, bob.key)
        assert (messages, code) == ([{"type": "error", "message": "order not found"}], 4404)
    assert (await alice.client.get(f"/api/orders/{mine}")).json()["status"] in ("pending", "waiting")  # bob's cancel did nothing
    assert [o["orderId"] for o in (await bob.client.get("/api/orders")).json()["orders"]] == []
    listed = [o["orderId"] for o in (await alice.client.get("/api/orders")).json()["orders"]]
    assert set(listed) == {mine, done}
    assert (await bob.client.get("/api/orders", params={"account": alice.name})).status_code == 403
    # the admin sees both accounts, and can filter by one
    by_alice = [o["orderId"] for o in (await admin.get("/api/orders", params={"account": alice.name})).json()["orders"]]
    assert set(by_alice) == {mine, done} and (await admin.get(f"/api/orders/{mine}")).status_code == 200
    # the owner follows its order to the end; the account stream shows only the caller's events
    messages, code = await follow(engine, done, alice.key)
    assert statuses(messages)[-1] == "confirmed" and code == 1000
    cancelled = await alice.client.delete(f"/api/orders/{mine}")
    assert cancelled.status_code in (200, 202), cancelled.text
    async with websockets.connect(f"{engine.ws_url}/api/stream?since=0", additional_headers=bearer(bob.key)) as ws:
        first = json.loads(await ws.recv())
        assert first["type"] == "connected"
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "pong"  # no event of alice's came first
    print(
        f"\ntenancy: {bob.name} got 404 / 404 / 4404 on {alice.name}'s orders, exactly as for an unknown id; lists show only the caller's"
    )


async def test_idempotency_keys_are_per_account(accounts: Accounts) -> None:
    alice, bob = await accounts.new("alice"), await accounts.new("bob")
    key = {"Idempotency-Key": f"same-{secrets.token_hex(4)}"}
    first = await alice.client.post("/api/orders/execute", json=ORDER, headers=key)
    other = await bob.client.post("/api/orders/execute", json=ORDER, headers=key)
    again = await alice.client.post("/api/orders/execute", json=ORDER, headers=key)
    assert first.status_code == other.status_code == again.status_code == 202
    assert first.json()["orderId"] != other.json()["orderId"]
    assert (
        again.json()["orderId"] == first.json()["orderId"] and again.json()["message"] == "order already accepted for this Idempotency-Key"
    )
    assert (await alice.client.post("/api/orders/execute", json={**ORDER, "amount": 2}, headers=key)).status_code == 422


async def test_a_revoked_key_is_refused_at_once_on_every_replica(
    engine: EngineProcess, accounts: Accounts, admin: httpx.AsyncClient
) -> None:
    victim = await accounts.new("revoked")
    order_id = (await victim.client.post("/api/orders/execute", json=ORDER)).json()["orderId"]
    for _ in range(6):  # warm both replicas' caches with the key
        assert (await victim.client.get(f"/api/orders/{order_id}")).status_code == 200
    revoked = await admin.delete(f"/api/keys/{victim.key_id}")
    assert revoked.status_code == 200 and revoked.json()["revokedAt"] > 0
    answers = [(await victim.client.get(f"/api/orders/{order_id}")).status_code for _ in range(10)]
    answers.append((await victim.client.post("/api/orders/execute", json=ORDER)).status_code)
    assert answers == [401] * 11, answers
    assert await handshake_status(f"{engine.ws_url}/api/orders/{order_id}/status", additional_headers=bearer(victim.key)) == 401
    listed = {k["keyId"]: k for k in (await admin.get("/api/keys", params={"account": victim.name})).json()["keys"]}
    assert "key" not in listed[victim.key_id] and listed[victim.key_id]["revokedAt"] > 0
    assert (await admin.delete("/api/keys/0123456789abcdef")).status_code == 404
    print(f"\nrevocation: the next 11 calls after DELETE (2 replicas, round robin) -> {sorted(set(answers))}")


async def test_keys_are_shown_once_and_stored_as_hashes(engine: EngineProcess, accounts: Accounts, admin: httpx.AsyncClient) -> None:
    account = await accounts.new("hashed")
    listed = (await admin.get("/api/keys", params={"account": account.name})).json()["keys"]
    assert [set(k) for k in listed] == [{"keyId", "account", "scopes", "createdAt", "createdBy"}]
    conn = await asyncpg.connect(engine.stores.database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", account.key_id)
    finally:
        await conn.close()
    assert row is not None and account.key.split("_", 2)[2] not in json.dumps(dict(row), default=str)
    bad = await admin.post("/api/keys", json={"account": "Not Valid", "scopes": ["trade"]})
    assert bad.status_code == 400 and bad.json()["error"] == "Validation failed"
    assert (await admin.post("/api/keys", json={"account": "x", "scopes": ["root"]})).status_code == 400


async def test_websocket_token_origin_and_cors(engine: EngineProcess, accounts: Accounts) -> None:
    alice = await accounts.new("ws")
    order_id = (await alice.client.post("/api/orders/execute", json=ORDER)).json()["orderId"]
    url = f"{engine.ws_url}/api/orders/{order_id}/status"
    assert await handshake_status(url) == 401
    assert await handshake_status(url, additional_headers=bearer("oee_nope")) == 401
    assert await handshake_status(f"{url}?token={ADMIN_KEY}x") == 401
    messages, code = await follow(engine, order_id, None, query=f"?token={alice.key}")  # browsers cannot set headers
    assert statuses(messages)[-1] == "confirmed" and code == 1000
    assert await handshake_status(url, additional_headers=bearer(alice.key), origin="https://evil.example") == 403
    messages, code = await follow(engine, order_id, alice.key, origin=ORIGIN)
    assert code == 1000
    async with httpx.AsyncClient(base_url=engine.url) as client:
        allowed = await client.options(
            "/api/orders",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"},
        )
        other = await client.options("/api/orders", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
        simple = await client.get("/health", headers={"Origin": ORIGIN})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in other.headers
    assert simple.headers.get("access-control-allow-origin") == ORIGIN
