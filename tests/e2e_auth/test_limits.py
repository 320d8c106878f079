"""Admission limits and pre-trade risk over real HTTP and WebSocket, across two ingress replicas: 429 with
Retry-After and RateLimit-* for a flooding account while another flows, the open-order cap, risk
denials with their codes (nothing stored), and the stream caps and message limits."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time

import asyncpg
import httpx
import websockets

from tests.e2e_auth.conftest import Accounts, bearer
from tests.engine_process import EngineProcess

ORDER = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 0.5, "orderType": "MARKET"}
WAITING = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1, "orderType": "LIMIT", "limitPrice": 1e9}  # never fires


async def test_a_flooding_account_gets_429_while_another_still_gets_202(accounts: Accounts) -> None:
    flood = await accounts.new("flood", ratePerSecond=2, rateBurst=5)
    calm = await accounts.new("calm")
    started = time.monotonic()
    flooded, calm_answers = await asyncio.gather(
        asyncio.gather(*(flood.client.post("/api/orders/execute", json=ORDER) for _ in range(30))),
        asyncio.gather(*(calm.client.post("/api/orders/execute", json=ORDER) for _ in range(5))),
    )
    took = time.monotonic() - started
    admitted = [r for r in flooded if r.status_code == 202]
    limited = [r for r in flooded if r.status_code == 429]
    assert len(admitted) + len(limited) == 30, [r.status_code for r in flooded]
    assert 5 <= len(admitted) <= 5 + 2 * took + 1, (len(admitted), took)  # the burst, plus 2/s while the flood lasted
    assert [r.status_code for r in calm_answers] == [202] * 5
    sample = limited[0]
    assert sample.json()["error"] == "Too many requests" and int(sample.headers["retry-after"]) >= 1
    assert sample.headers["ratelimit-limit"] == "5" and sample.headers["ratelimit-remaining"] == "0"
    assert int(sample.headers["ratelimit-reset"]) >= 1 and sample.headers["ratelimit-policy"] == "5;w=3"
    assert int(admitted[0].headers["ratelimit-remaining"]) <= 4
    await asyncio.sleep(int(sample.headers["retry-after"]) + 0.5)
    assert (await flood.client.post("/api/orders/execute", json=ORDER)).status_code == 202  # a token came back
    print(f"\nflood: 30 POSTs in {took:.2f} s at 2/s burst 5 -> {len(admitted)} x 202, {len(limited)} x 429; the other account 5 x 202")


async def test_the_open_order_cap_holds_and_frees_up(accounts: Accounts) -> None:
    trader = await accounts.new("open", maxOpenOrders=3)
    held = [await trader.client.post("/api/orders/execute", json=WAITING) for _ in range(3)]
    assert [r.status_code for r in held] == [202] * 3
    over = await trader.client.post("/api/orders/execute", json=WAITING)
    assert over.status_code == 429 and "3 open orders" in over.json()["message"] and int(over.headers["retry-after"]) >= 1
    limits = (await trader.client.get("/api/orders")).json()["orders"]
    assert len(limits) == 3  # the refused one was not stored
    cancel = await trader.client.delete(f"/api/orders/{held[0].json()['orderId']}")
    assert cancel.status_code in (200, 202)
    deadline = time.monotonic() + 30
    while (again := await trader.client.post("/api/orders/execute", json=WAITING)).status_code == 429:
        assert time.monotonic() < deadline, again.text
        await asyncio.sleep(0.2)
    assert again.status_code == 202
    for order in (await trader.client.get("/api/orders")).json()["orders"]:
        await trader.client.delete(f"/api/orders/{order['orderId']}")


async def test_risk_denials_carry_their_codes_and_store_nothing(
    engine: EngineProcess, accounts: Accounts, admin: httpx.AsyncClient
) -> None:
    trader = await accounts.new("risk", maxOpenNotionalUsd=1000, maxDepthShare=0.0001)
    conn = await asyncpg.connect(engine.stores.database_url)
    try:
        before = await conn.fetchval("SELECT count(*) FROM orders WHERE account = $1", trader.name)
        notional = await trader.client.post(
            "/api/orders/execute", json={"tokenIn": "SOL", "tokenOut": "USDC", "amount": 10_000, "orderType": "MARKET"}
        )
        body = notional.json()
        assert notional.status_code == 422 and body["error"] == "Risk check failed"
        codes = [d["code"] for d in body["details"]]
        assert codes == ["max_notional", "max_depth_share"], body
        assert body["details"][0]["limit"] == 1_000_000 and body["details"][0]["value"] > 1_000_000
        depth = await trader.client.post(
            "/api/orders/execute", json={"tokenIn": "SOL", "tokenOut": "USDC", "amount": 10, "orderType": "MARKET"}
        )
        assert depth.status_code == 422 and [d["code"] for d in depth.json()["details"]] == ["max_depth_share"], depth.text
        first = await trader.client.post("/api/orders/execute", json={**WAITING, "amount": 4})  # ~$600, waits
        assert first.status_code == 202, first.text
        second = await trader.client.post("/api/orders/execute", json={**WAITING, "amount": 4})
        assert second.status_code == 422 and [d["code"] for d in second.json()["details"]] == ["max_open_notional"], second.text
        unpriceable = await trader.client.post(
            "/api/orders/execute",
            json={"tokenIn": "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU", "tokenOut": "SOL", "amount": 1, "orderType": "SNIPER"},
        )
        assert unpriceable.status_code == 422 and unpriceable.json()["details"][0]["code"] == "max_notional"
        after = await conn.fetchval("SELECT count(*) FROM orders WHERE account = $1", trader.name)
    finally:
        await conn.close()
    assert after - before == 1  # only the order that passed
    await trader.client.delete(f"/api/orders/{first.json()['orderId']}")
    print(f"\nrisk: {codes} / max_depth_share / max_open_notional / unpriceable max_notional, {after - before} order stored")


async def test_limits_are_visible_and_default_when_not_overridden(accounts: Accounts, admin: httpx.AsyncClient) -> None:
    account = await accounts.new("lim", rateBurst=7)
    view = (await admin.get(f"/api/admin/accounts/{account.name}/limits")).json()
    assert view["limits"]["rateBurst"] == 7 and view["limits"]["ratePerSecond"] == 50 and view["overrides"] == ["rateBurst"]
    assert view["limits"]["maxOpenOrders"] == 1000 and view["limits"]["maxStreams"] == 100
    reset = await admin.put(f"/api/admin/accounts/{account.name}/limits", json={})
    assert reset.json()["overrides"] == [] and reset.json()["limits"]["rateBurst"] == 100
    for bad in ({"ratePerSecond": 0}, {"rateBurst": -1}, {"maxDepthShare": "x"}, {"unknown": 1}):
        assert (await admin.put(f"/api/admin/accounts/{account.name}/limits", json=bad)).status_code == 400, bad
    assert (await admin.get("/api/admin/accounts/NOT-VALID/limits")).status_code == 400


async def test_streams_per_account_and_incoming_messages_are_limited(engine: EngineProcess, accounts: Accounts) -> None:
    viewer = await accounts.new("streams", maxStreams=2)
    order_id = (await viewer.client.post("/api/orders/execute", json=WAITING)).json()["orderId"]
    url = f"{engine.ws_url}/api/orders/{order_id}/status"
    headers = bearer(viewer.key)
    first = await websockets.connect(url, additional_headers=headers)
    second = await websockets.connect(url, additional_headers=headers)
    try:
        for ws in (first, second):
            assert json.loads(await ws.recv())["type"] == "connected"
        async with websockets.connect(url, additional_headers=headers) as third:
            refused = []
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in third:
                    refused.append(json.loads(raw))
            await third.wait_closed()
        assert refused[-1]["type"] == "error" and third.close_code == 4429, (refused, third.close_code)
        await first.close()
        deadline = time.monotonic() + 60
        while True:  # the slot is free again once the server has seen the close
            async with websockets.connect(url, additional_headers=headers) as fourth:
                if json.loads(await fourth.recv())["type"] == "connected":
                    break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        # too large a message closes the stream with 1008; so does a flood of small ones
        await second.send(json.dumps({"type": "ping", "pad": "x" * 5000}))
        await asyncio.wait_for(second.wait_closed(), 10)
        assert second.close_code == 1008
        async with websockets.connect(url, additional_headers=headers) as chatty:
            await chatty.recv()
            for _ in range(30):
                await chatty.send(json.dumps({"type": "ping"}))
            await asyncio.wait_for(chatty.wait_closed(), 10)
        assert chatty.close_code == 1008
    finally:
        await first.close()
        await second.close()
        await viewer.client.delete(f"/api/orders/{order_id}")
    print("\nstreams: a third stream of an account capped at 2 -> 4429; a 5 KB message -> 1008; 30 pings at once -> 1008")


def _frame(data: bytes) -> tuple[int, int] | None:
    """The opcode and whole size of the first complete frame in ``data`` (None if it is not all there)."""
    if len(data) < 2:
        return None
    length, header = data[1] & 0x7F, 2
    if length == 126:
        if len(data) < 4:
            return None
        length, header = int.from_bytes(data[2:4], "big"), 4
    elif length == 127:
        if len(data) < 10:
            return None
        length, header = int.from_bytes(data[2:10], "big"), 10
    return (data[0] & 0x0F, header + length) if len(data) >= header + length else None


def _silent_peer(port: int, path: str, key: str, timeout_s: float) -> tuple[float | None, float | None]:
    """Open a WebSocket by hand and never answer: (seconds to the server's first ping, seconds until it
    dropped the connection), None where it did not happen within ``timeout_s``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {key}\r\n\r\n"
            ).encode()
        )
        started = time.monotonic()
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        assert data.startswith(b"HTTP/1.1 101"), data[:200]
        data = data.split(b"\r\n\r\n", 1)[1]
        first_ping: float | None = None
        while time.monotonic() - started < timeout_s:
            sock.settimeout(max(0.1, timeout_s - (time.monotonic() - started)))
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                break
            except ConnectionResetError:
                return first_ping, time.monotonic() - started
            if not chunk:
                return first_ping, time.monotonic() - started
            data += chunk
            while (frame := _frame(data)) is not None:  # the server's frames: unmasked
                opcode, size = frame
                if opcode == 0x9 and first_ping is None:
                    first_ping = time.monotonic() - started
                if opcode == 0x8:
                    return first_ping, time.monotonic() - started
                data = data[size:]
        return first_ping, None


async def test_a_peer_that_stops_answering_pings_is_dropped(engine: EngineProcess, accounts: Accounts) -> None:
    viewer = await accounts.new("silent", maxStreams=1)
    order_id = (await viewer.client.post("/api/orders/execute", json=WAITING)).json()["orderId"]
    try:
        first_ping, dropped = await asyncio.to_thread(_silent_peer, engine.port, f"/api/orders/{order_id}/status", viewer.key, 120.0)
        assert first_ping is not None and first_ping <= 30, first_ping
        assert dropped is not None and dropped <= 90, dropped
        deadline = time.monotonic() + 30  # its stream slot (the account's only one) is free again
        while True:
            with contextlib.suppress(websockets.ConnectionClosed):
                async with websockets.connect(f"{engine.ws_url}/api/orders/{order_id}/status", additional_headers=bearer(viewer.key)) as ws:
                    if json.loads(await ws.recv())["type"] == "connected":
                        break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.5)
    finally:
        await viewer.client.delete(f"/api/orders/{order_id}")
    print(f"\nkeep-alive: first ping after {first_ping:.1f} s; a peer that never answered was dropped after {dropped:.1f} s")
