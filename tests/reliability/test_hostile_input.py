"""Hostile input never gets a 500, and a rejected request leaves nothing behind.

Nasty bodies, Idempotency-Key edges, a 20 MB body, 500 WebSockets to junk ids, and schemathesis
over every operation of /openapi.json (no server error, and every body on its declared schema).
Before/after snapshots of PostgreSQL and Redis show that only accepted requests stored anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
import pytest
import redis.asyncio as aioredis
import websockets

from tests.chain_scan import scan_rpc
from tests.e2e.wsclient import follow
from tests.engine_process import EngineProcess
from tests.reliability.conftest import RayTool, Stack, Stacks, engine_processes
from tests.reliability.helpers import TERMINAL, as_text, audit, pg_connect, wait_terminal

pytestmark = pytest.mark.slow

GOOD = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1, "orderType": "MARKET"}
JSON = "application/json"
ADMIN_KEY = secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
"""The engine runs protected (OEE_ADMIN_KEY): every request here presents the admin key, so the hostile
input reaches the routes themselves, the admin routes included."""
BOOKKEEPING = ("acct:rate:", "acct:pruned:", "acct:streams:", "acct:revoked", "trading:")
"""Redis keys admission and the kill switch keep (rate buckets, stream counts, the trading state): not order data."""


@pytest.fixture(scope="module")
def engine(module_stacks: Stacks) -> Iterator[tuple[Stack, EngineProcess]]:
    stack = module_stacks.new()
    proc = stack.engine(OEE_ADMIN_KEY=ADMIN_KEY)
    proc.start()
    yield stack, proc


# --------------------------------------------------------------------------- what is stored


@dataclass
class Snapshot:
    orders: set[str]
    events: int
    swaps: int
    redis_keys: set[str]
    active: set[str]
    queued: set[str]


async def snapshot(stack: Stack) -> Snapshot:
    conn = await pg_connect(stack.stores.database_url)
    try:
        orders = {r["order_id"] for r in await conn.fetch("SELECT order_id FROM orders")}
        events = int(await conn.fetchval("SELECT count(*) FROM order_events"))
        swaps = sum(1 for tx in await scan_rpc(stack.chain.url) if tx.error is None)  # landed, counted on the chain
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(stack.stores.redis_url)
    prefix = stack.stores.redis_prefix
    try:
        keys = {as_text(k) async for k in client.scan_iter(match=f"{prefix}*", count=1000)}
        active = {as_text(m) for m in await client.smembers(f"{prefix}active")}
        queued = {as_text(m) for m in await client.zrange(f"{prefix}queue", 0, -1)}
    finally:
        await client.aclose()
    return Snapshot(orders, events, swaps, keys, active, queued)


async def assert_only_accepted_stored(
    stack: Stack, before: Snapshot, accepted: set[str], allowed_keys: frozenset[str] | set[str] = frozenset()
) -> Snapshot:
    """Every row and key that appeared belongs to an accepted order (or is explicitly allowed)."""
    if accepted:
        await wait_terminal(stack.stores.database_url, sorted(accepted), timeout_s=60)
    after = await snapshot(stack)
    prefix = stack.stores.redis_prefix
    new_rows = after.orders - before.orders
    assert new_rows == accepted, f"orphan rows: {sorted(new_rows - accepted)[:5]}, missing: {sorted(accepted - new_rows)[:5]}"
    new_keys = after.redis_keys - before.redis_keys
    explained = {f"{prefix}order:{i}" for i in accepted} | {f"{prefix}{k}" for k in ("active", "queue", "epoch", *allowed_keys)}
    explained |= {k for k in new_keys if k.startswith(tuple(prefix + b for b in BOOKKEEPING))}
    assert new_keys <= explained, f"orphan Redis keys: {sorted(new_keys - explained)[:5]}"
    assert after.active <= before.active | accepted and after.queued <= before.queued | accepted, (after.active, after.queued)
    if not accepted:
        assert (after.events, after.swaps) == (before.events, before.swaps), "events or swaps appeared for rejected requests"
    return after


# --------------------------------------------------------------------------- nasty bodies


def body(**over: Any) -> bytes:
    return json.dumps({**GOOD, **over}).encode()


def amount(literal: bytes) -> bytes:
    return b'{"tokenIn":"SOL","tokenOut":"USDC","orderType":"MARKET","amount":' + literal + b"}"


# (name, raw body, content type or None for no header, statuses allowed). A 202 is allowed only where the
# body is, read generously, a valid order; such orders are followed to a terminal state.
NASTY: list[tuple[str, bytes, str | None, set[int]]] = [
    ("amount 1e308", amount(b"1e308"), JSON, {400}),
    ("amount 1e400 (overflows to inf)", amount(b"1e400"), JSON, {400}),
    ("amount -1e400", amount(b"-1e400"), JSON, {400}),
    ("amount 1e-400 (underflows to 0)", amount(b"1e-400"), JSON, {400}),
    ("amount 1e99999999999999999999", amount(b"1e99999999999999999999"), JSON, {400}),
    ("NaN literal", amount(b"NaN"), JSON, {400}),
    ("Infinity literal", amount(b"Infinity"), JSON, {400}),
    ("-Infinity literal", amount(b"-Infinity"), JSON, {400}),
    ("NaN as a string", body(amount="NaN"), JSON, {400}),
    ("amount -0", amount(b"-0"), JSON, {400}),
    ("amount -0.0", amount(b"-0.0"), JSON, {400}),
    ("amount 0e0", amount(b"0e0"), JSON, {400}),
    ("30-digit integer amount", amount(b"123456789012345678901234567890"), JSON, {400}),
    ("5000-digit integer amount (over Python's int parsing limit)", amount(b"9" * 5000), JSON, {400}),
    ("30-digit fraction amount (dust)", amount(b"0.000000000000000000000000000001"), JSON, {202, 400}),
    ("30 significant digits", amount(b"1.23456789012345678901234567890"), JSON, {202}),
    ("100 KB string", body(tokenIn="A" * 100_000), JSON, {413}),
    ("15 KB string, under the body limit", body(tokenIn="A" * 15_000), JSON, {400}),
    ("\\u0000 in a token", body(tokenIn="SO\u0000L"), JSON, {400}),
    ("raw NUL byte in a string", b'{"tokenIn":"SO\x00L","tokenOut":"USDC","amount":1}', JSON, {400}),
    ("RTL override in a token", body(tokenIn="\u202eLOS"), JSON, {400}),
    ("emoji token", body(tokenOut="\U0001f680"), JSON, {400}),
    ("RTL and emoji in an unknown field", body(note="\u202e\U0001f680 \u0000"), JSON, {202}),
    ("lone surrogate in a token", b'{"tokenIn":"\\ud800","tokenOut":"USDC","amount":1}', JSON, {400}),
    ("lone surrogate in orderType", b'{"tokenIn":"SOL","tokenOut":"USDC","amount":1,"orderType":"\\udfff"}', JSON, {400}),
    ("lone surrogate as a key", b'{"\\ud800":1,"tokenIn":"SOL","tokenOut":"USDC","amount":1,"orderType":"MARKET"}', JSON, {202, 400}),
    ("invalid UTF-8", b'{"tokenIn":"\xff\xfe","tokenOut":"USDC","amount":1}', JSON, {400}),
    ("UTF-16 body", json.dumps(GOOD).encode("utf-16"), JSON, {202, 400}),
    ("UTF-8 BOM", b"\xef\xbb\xbf" + body(), JSON, {202, 400}),
    ("array for a token", body(tokenIn=["SOL"]), JSON, {400}),
    ("object for a token", body(tokenIn={"$ne": ""}), JSON, {400}),
    ("number for a token", body(tokenIn=123), JSON, {400}),
    ("null for a token", body(tokenIn=None), JSON, {400}),
    ("array for the amount", body(amount=[1]), JSON, {400}),
    ("object for the amount", body(amount={"$gt": 0}), JSON, {400}),
    ("string for the amount", body(amount="1"), JSON, {400}),
    ("array for orderType", body(orderType=["MARKET"]), JSON, {400}),
    ("no orderType", b'{"tokenIn":"SOL","tokenOut":"USDC","amount":1}', JSON, {400}),
    ("nested arrays 7000 deep", b"[" * 7000 + b"]" * 7000, JSON, {400}),
    ("nested objects 2500 deep", b'{"a":' * 2500 + b"1" + b"}" * 2500, JSON, {400}),
    ("empty body", b"", JSON, {400}),
    ("whitespace body", b" \n\t ", JSON, {400}),
    ("null body", b"null", JSON, {400}),
    ("array body", b"[]", JSON, {400}),
    ("string body", b'"order"', JSON, {400}),
    ("number body", b"123", JSON, {400}),
    ("true body", b"true", JSON, {400}),
    ("trailing garbage", body() + b"xyz", JSON, {400}),
    ("two objects", body() + body(), JSON, {400}),
    ("truncated", body()[:-3], JSON, {400}),
    ("comment", b'{/* x */"tokenIn":"SOL","tokenOut":"USDC","amount":1}', JSON, {400}),
    ("single quotes", b"{'tokenIn':'SOL','tokenOut':'USDC','amount':1}", JSON, {400}),
    ("duplicate key, last one invalid", b'{"tokenIn":"SOL","tokenOut":"USDC","orderType":"MARKET","amount":1,"amount":-1}', JSON, {400}),
    ("duplicate key, last one valid", b'{"tokenIn":"SOL","tokenOut":"USDC","orderType":"MARKET","amount":-1,"amount":1}', JSON, {202, 400}),
    (
        "duplicate key making the same pair",
        b'{"tokenIn":"SOL","tokenOut":"USDC","tokenOut":"SOL","amount":1,"orderType":"MARKET"}',
        JSON,
        {400},
    ),
    ("text/plain", body(), "text/plain", {415}),
    ("application/xml", b"<order><tokenIn>SOL</tokenIn></order>", "application/xml", {415}),
    (
        "multipart/form-data",
        b'--x\r\nContent-Disposition: form-data; name="tokenIn"\r\n\r\nSOL\r\n--x--\r\n',
        "multipart/form-data; boundary=x",
        {415},
    ),
    ("form-urlencoded", b"tokenIn=SOL&tokenOut=USDC&amount=1", "application/x-www-form-urlencoded", {415}),
    ("application/json-patch+json", body(), "application/json-patch+json", {415}),
    ("garbage content type", body(), "!!!/???; ;;", {415}),
    ("no content type", body(), None, {202, 415}),
]


async def test_nasty_bodies_get_a_4xx_and_store_nothing(engine: tuple[Stack, EngineProcess]) -> None:
    stack, proc = engine
    before = await snapshot(stack)
    results: list[tuple[str, int, set[int], str]] = []
    accepted: set[str] = set()
    async with httpx.AsyncClient(base_url=proc.url, timeout=30, headers=AUTH) as client:
        for name, raw, content_type, allowed in NASTY:
            headers = {"content-type": content_type} if content_type is not None else {}
            response = await client.post("/api/orders/execute", content=raw, headers=headers)
            results.append((name, response.status_code, allowed, response.text[:200]))
            if response.status_code == 202:
                accepted.add(str(response.json()["orderId"]))
            elif response.status_code < 500:
                error = response.json()  # a clean JSON error, whatever the input
                assert error.get("error") and isinstance(error.get("message"), str), (name, response.text[:300])
    statuses = Counter(code for _, code, _, _ in results)
    unexpected = [(name, code, sorted(allowed), text) for name, code, allowed, text in results if code not in allowed]
    print(
        f"\nnasty bodies: {len(NASTY)} sent, answers {dict(sorted(statuses.items()))}, "
        f"accepted {len(accepted)} (valid when read generously)"
    )
    for name, code, _, _ in results:
        if code == 202:
            print(f"  accepted: {name}")
    assert not [r for r in results if r[1] >= 500], [r for r in results if r[1] >= 500]
    assert not unexpected, unexpected
    await assert_only_accepted_stored(stack, before, accepted)
    result = await audit(stack.stores.database_url, sorted(accepted), stack.chain.url)
    assert not result.problems(), result.problems()
    print(f"nasty bodies: accepted ones ended {dict(result.by_status)}; {dict(result.failure_reasons)}")


# --------------------------------------------------------------------------- Idempotency-Key: what tests/e2e does not cover


async def test_idempotency_key_edges(engine: tuple[Stack, EngineProcess]) -> None:
    stack, proc = engine
    before = await snapshot(stack)
    unique = secrets.token_hex(4)
    accepted: set[str] = set()
    async with httpx.AsyncClient(base_url=proc.url, timeout=30, headers=AUTH) as client:

        async def post(payload: bytes | dict[str, Any], key: str | bytes | None) -> httpx.Response:
            headers: dict[str, Any] = {"content-type": JSON}
            if key is not None:
                headers["Idempotency-Key"] = key
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            response = await client.post("/api/orders/execute", content=raw, headers=headers)
            assert response.status_code < 500, response.text
            if response.status_code == 202:
                accepted.add(str(response.json()["orderId"]))
            return response

        # Length bounds: 1..255 characters.
        longest = await post(GOOD, f"{unique}-" + "k" * (255 - len(unique) - 1))
        too_long = await post(GOOD, "k" * 256)
        empty = await post(GOOD, "")
        huge = await post(GOOD, "k" * 10_000)
        assert longest.status_code == 202 and too_long.status_code == 400 and empty.status_code == 400, (too_long.text, empty.text)
        assert huge.status_code in (400, 431), huge.text

        # The same request spelled differently is the same request: it replays, never 422.
        key = f"spell-{unique}"
        first = await post({"tokenIn": "SOL", "tokenOut": "USDC", "amount": 2, "orderType": "MARKET"}, key)
        assert first.status_code == 202
        order_id = first.json()["orderId"]
        spellings: list[bytes | dict[str, Any]] = [
            b' {\n "orderType" : "MARKET" ,"amount":2.0,  "tokenOut":"USDC","tokenIn":"SOL"}\n',
            {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 2e0, "orderType": "MARKET", "note": "ignored field"},
            {"tokenIn": "sol", "tokenOut": "usdc", "amount": 2, "orderType": "MARKET"},  # symbols are case-insensitive
            {
                "tokenIn": "So11111111111111111111111111111111111111112",
                "tokenOut": "USDC",
                "amount": 2,
                "orderType": "MARKET",
            },  # SOL's mint
        ]
        replays = [await post(s, key) for s in spellings]
        assert [(r.status_code, r.json().get("orderId")) for r in replays] == [(202, order_id)] * len(spellings), [r.text for r in replays]
        assert (await post({"tokenIn": "SOL", "tokenOut": "USDC", "amount": 2.5, "orderType": "MARKET"}, key)).status_code == 422
        # Without orderType the body is invalid (never read as MARKET): a 400, not a replay.
        assert (await post({"tokenIn": "SOL", "tokenOut": "USDC", "amount": 2}, key)).status_code == 400

        # Two different bodies racing on one fresh key: one order; the losers get that order or 422, never a second one.
        race = f"race-{unique}"
        bodies = [
            {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1, "orderType": "MARKET"},
            {"tokenIn": "USDC", "tokenOut": "SOL", "amount": 150, "orderType": "MARKET"},
        ]
        answers = await asyncio.gather(*(post(bodies[i % 2], race) for i in range(10)))
        winners = {r.json()["orderId"] for r in answers if r.status_code == 202}
        assert len(winners) == 1 and {r.status_code for r in answers} <= {202, 422}, [(r.status_code, r.text[:80]) for r in answers]

        # Bytes outside ASCII in the key (sent raw, decoded as latin-1 by the server): stored and replayed consistently.
        odd = f"cl\u00e9-\U0001f680-{unique}".encode()
        odd_first = await post(GOOD, odd)
        odd_again = await post(GOOD, odd)
        assert odd_first.status_code in (202, 400) and odd_again.status_code == odd_first.status_code, (odd_first.text, odd_again.text)
        if odd_first.status_code == 202:
            assert odd_again.json()["orderId"] == odd_first.json()["orderId"]

        # A replay after the order finished still returns it.
        await wait_terminal(stack.stores.database_url, [order_id], timeout_s=30)
        late = await post(GOOD | {"amount": 2}, key)
        assert (late.status_code, late.json()["orderId"]) == (202, order_id)
    await assert_only_accepted_stored(stack, before, accepted)
    print(
        f"\nidempotency: key of 255 chars 202, 256 chars {too_long.status_code}, empty {empty.status_code}, 10 KB {huge.status_code}; "
        f"{len(spellings)} spellings of one request replayed the same order; 10 racing POSTs with 2 bodies on one key -> "
        f"{len(winners)} order, answers {dict(Counter(r.status_code for r in answers))}; non-ASCII key {odd_first.status_code}; "
        f"orders stored {len(accepted)}"
    )


# --------------------------------------------------------------------------- a 20 MB body


def _engine_rss(proc: EngineProcess) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in engine_processes(proc.ray_dir):
        try:
            name = (p.cmdline() or [""])[0]
            if name.startswith(("ray::ProxyActor", "ray::ServeReplica")):
                out[f"{name.split()[0][:24]}:{p.pid}"] = p.memory_info().rss
        except psutil.Error:
            continue
    return out


def _read_response(sock: socket.socket, timeout_s: float) -> bytes:
    sock.settimeout(timeout_s)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def _post_declared(port: int, declared: str, send_bytes: int) -> tuple[bytes, float]:
    """Headers declaring ``declared`` bytes, then only ``send_bytes`` of body; the answer must come anyway."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        head = (
            f"POST /api/orders/execute HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Length: {declared}\r\n\r\n"
        ).encode()
        sock.sendall(head + b"A" * send_bytes)
        return _read_response(sock, 15), time.monotonic() - started


def _upload(port: int, total: int, chunked: bool, piece: int = 64 * 1024) -> tuple[bytes, int]:
    """Send a ``total``-byte body as fast as the server takes it, stopping as soon as it answers.

    Returns the answer and the body bytes sent before it came. A server that stops reading at its
    limit answers once the kernel's socket buffers are full (a few MiB), long before 20 MB."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/orders/execute HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {ADMIN_KEY}\r\n{framing}\r\n\r\n".encode()
        )
        data = (f"{piece:x}\r\n".encode() + b"A" * piece + b"\r\n") if chunked else b"A" * piece
        sent = 0
        try:
            while sent < total:
                readable, writable, _ = select.select([sock], [sock], [], 5)
                if readable:
                    break
                if writable:
                    sock.sendall(data)
                    sent += piece
            else:
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_response(sock, 15), sent


async def test_20_mb_body_is_refused_with_413(engine: tuple[Stack, EngineProcess]) -> None:
    """A declared 20 MB body is refused on its Content-Length at once: with only its headers and
    64 KiB sent, the 413 arrives and the connection ends.

    A client that pushes the whole body anyway (declared or chunked) also gets 413 and nothing is
    stored, but Ray Serve's HTTP proxy keeps reading a request body while the replica answers, so
    how much of it is read is a race with the proxy (README, Guarantees and limits): measured and
    printed here, not asserted.
    """
    stack, proc = engine
    before = await snapshot(stack)
    twenty_mb = 20 * 1024 * 1024
    headers_only, headers_only_s = await asyncio.to_thread(_post_declared, proc.port, str(twenty_mb), 64 * 1024)
    absurd, _ = await asyncio.to_thread(_post_declared, proc.port, "9" * 30, 0)
    chunked_answer, chunked_sent = await asyncio.to_thread(_upload, proc.port, twenty_mb, True)
    rss_before = _engine_rss(proc)
    uploads: list[tuple[str, bytes, int]] = []
    for _ in range(3):
        answer, sent = await asyncio.to_thread(_upload, proc.port, twenty_mb, False)
        uploads.append(("Content-Length", answer, sent))
    rss_after = _engine_rss(proc)
    growth = {k.split(":")[2] if k.count(":") > 2 else k: (rss_after.get(k, v) - v) / 2**20 for k, v in rss_before.items()}

    def first_line(raw: bytes) -> str:
        return raw.split(b"\r\n", 1)[0].decode(errors="replace") or "(no answer)"

    print(
        f"\n20 MB body: Content-Length 20 MB with 64 KiB sent -> {first_line(headers_only)!r} in {headers_only_s:.2f} s; "
        f"Content-Length of 30 digits -> {first_line(absurd)!r}; full uploads (body bytes sent before the answer): "
        + "; ".join(f"{kind} -> {first_line(a)!r} after {sent / 2**20:.1f} MiB" for kind, a, sent in uploads)
        + f"; RSS growth over the 3 uploads (MiB): {', '.join(f'{k} {v:+.1f}' for k, v in growth.items())}"
        + f"; chunked 20 MB -> {first_line(chunked_answer)!r} after {chunked_sent / 2**20:.1f} MiB (buffered by Serve's proxy)"
    )
    assert chunked_answer.startswith(b"HTTP/1.1 413"), chunked_answer[:300]
    assert headers_only.startswith(b"HTTP/1.1 413") and headers_only_s < 5, headers_only[:300]
    assert absurd.startswith(b"HTTP/1.1 4"), absurd[:300]
    assert all(a.startswith(b"HTTP/1.1 413") for _, a, _ in uploads), [(k, a[:100]) for k, a, _ in uploads]
    assert rss_before and all(v < 200 for v in growth.values()), f"engine memory grew without bound: {growth}"
    await assert_only_accepted_stored(stack, before, set())


# --------------------------------------------------------------------------- WebSockets to junk ids


def junk_ids(count: int) -> list[str]:
    """Path segments (already URL-safe) for ids that are unknown, malformed, huge, or not routable at all."""
    fixed = [
        "not-an-id",
        "x" * 10_240,
        "order_" + "9" * 10_240,
        "../../x",
        "..%2F..%2Fx",
        "%2e%2e",
        "..",
        ".",
        "%00",
        "%FF%FE",
        "%0D%0ASet-Cookie:%20x=1",
        quote("order_1'; DROP TABLE orders;--", safe=""),
        quote("\u043e\u0440\u0434\u0435\u0440", safe=""),
        quote("\U0001f680\u202e", safe=""),
        "ORDER_1764000000000_DEADBEEF",
        "order_1764000000000_gggggggg",
        "order_17640000000000_deadbeef",
        "order_1764000000000_deadbeef%00",
        "%20",
        "order_1764000000000_deadbeef/extra",
    ]
    ids = list(fixed)
    while len(ids) < count:
        ids.append(f"order_{1_700_000_000_000 + secrets.randbelow(10**11):013d}_{secrets.token_hex(4)}")  # well formed, unknown
    return ids[:count]


async def _junk_connection(ws_url: str, segment: str) -> str:
    url = f"{ws_url}/api/orders/{segment}/status"
    try:
        async with asyncio.timeout(float(os.environ.get("OEE_REL_WS_TIMEOUT", "15"))):
            async with websockets.connect(url, open_timeout=30, max_size=2**20, additional_headers=AUTH) as ws:
                messages = []
                try:
                    async for raw in ws:
                        messages.append(json.loads(raw))
                except websockets.ConnectionClosed:
                    pass
                await ws.wait_closed()
                if messages == [{"type": "error", "message": "order not found"}] and ws.close_code == 4404:
                    return "4404"
                return f"UNCLEAN close {ws.close_code} after {messages[:2]}"
    except websockets.InvalidStatus as exc:
        code = exc.response.status_code
        return f"http {code}" if code < 500 else f"UNCLEAN http {code}"
    except Exception as exc:  # a timeout, a reset: not clean
        return f"UNCLEAN {type(exc).__name__}: {exc}"[:120]


def _open_connections(port: int) -> int:
    """Server-side TCP connections on the engine's port that are still open (not listening, not closed)."""
    live = {psutil.CONN_ESTABLISHED, psutil.CONN_CLOSE_WAIT, psutil.CONN_SYN_RECV, psutil.CONN_FIN_WAIT1, psutil.CONN_FIN_WAIT2}
    return sum(1 for c in psutil.net_connections(kind="tcp") if c.laddr and c.laddr.port == port and c.status in live)


async def test_500_websockets_to_junk_ids_are_refused_cleanly(engine: tuple[Stack, EngineProcess], raytool: RayTool) -> None:
    stack, proc = engine
    before = await snapshot(stack)
    hub_before = await raytool.hub_state()
    connections_before = _open_connections(proc.port)
    ids = junk_ids(500)
    gate = asyncio.Semaphore(50)

    async def one(segment: str) -> str:
        async with gate:
            return await _junk_connection(proc.ws_url, segment)

    started = time.monotonic()
    outcomes = await asyncio.gather(*(one(i) for i in ids))
    took = time.monotonic() - started
    kinds = Counter(o if not o.startswith("UNCLEAN") else "UNCLEAN" for o in outcomes)
    unclean = [(ids[n][:60], o) for n, o in enumerate(outcomes) if o.startswith("UNCLEAN")]
    deadline = time.monotonic() + 60
    while (left_open := _open_connections(proc.port)) > connections_before and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    hub_after = await raytool.hub_state()
    print(
        f"\nwebsockets: {len(ids)} connections to junk ids in {took:.1f} s -> {dict(kinds)}; open server connections "
        f"{connections_before} before, {left_open} after; hub {hub_before} -> {hub_after}"
    )
    assert not unclean, unclean[:10]
    assert left_open <= connections_before, f"{left_open - connections_before} connections left open"
    assert hub_after["subscribed_orders"] <= hub_before["subscribed_orders"], (hub_before, hub_after)
    assert hub_after["subscriptions"] <= hub_before["subscriptions"], (hub_before, hub_after)
    await assert_only_accepted_stored(stack, before, set())
    # And the engine still serves a real order end to end.
    async with httpx.AsyncClient(base_url=proc.url, timeout=30, headers=AUTH) as client:
        assert (await client.get("/health")).status_code == 200
        order_id = (await client.post("/api/orders/execute", json=GOOD)).json()["orderId"]
    messages, code = await follow(proc.ws_url, order_id, headers=AUTH)
    assert messages[-1].get("status") in TERMINAL and code == 1000, messages[-2:]


# --------------------------------------------------------------------------- schemathesis (last: it may move simulated prices)


SCHEMATHESIS_TIMEOUT_S = 150


async def test_schemathesis_finds_no_server_error_and_no_body_off_its_schema(engine: tuple[Stack, EngineProcess]) -> None:
    stack, proc = engine
    before = await snapshot(stack)
    work = Path(tempfile.mkdtemp(prefix="oee-rel-st-", dir="/tmp"))  # .hypothesis and reports stay out of the repo
    har = work / "run.har"
    # With the admin key, schemathesis may halt trading (PUT /api/admin/trading-state): submissions then get
    # the documented 503 "Trading halted". Schemathesis lets a 503 pass; below, every 5xx but that one fails.
    (work / "schemathesis.toml").write_text('[checks.not_a_server_error]\nexpected-statuses = ["2xx", "3xx", "4xx", "503"]\n')
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{proc.url}/openapi.json",
        "--checks",
        "not_a_server_error,response_schema_conformance",
        "--max-examples",
        "20",
        "--workers",
        "2",
        "-H",
        f"Authorization: Bearer {ADMIN_KEY}",
        "--seed",
        "20261125",
        "--request-timeout",
        "15",
        "--max-failures",
        "10",
        "--warnings",
        "off",
        "--report",
        "har",
        "--report-har-path",
        str(har),
    ]
    try:
        started = time.monotonic()
        done = await asyncio.to_thread(
            subprocess.run,
            command,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=SCHEMATHESIS_TIMEOUT_S,
            env={**os.environ, "NO_COLOR": "1"},
        )
        took = time.monotonic() - started
        entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def template(url: str) -> str:
        path = url.replace(proc.url, "").split("?")[0]
        path = re.sub(r"^/api/keys/[^/]+$", "/api/keys/{keyId}", path)
        path = re.sub(r"^/api/admin/accounts/[^/]+/limits$", "/api/admin/accounts/{account}/limits", path)
        head, _, rest = path.partition("/api/orders/")
        return path if not rest or rest == "execute" else f"{head}/api/orders/{{orderId}}"

    def halted(entry: dict[str, Any]) -> bool:
        return entry["response"]["status"] == 503 and '"Trading halted"' in entry["response"]["content"].get("text", "")

    operations = Counter(f"{e['request']['method']} {template(e['request']['url'])}" for e in entries)
    statuses = Counter(e["response"]["status"] for e in entries)
    server_errors = [
        (e["request"]["method"], e["request"]["url"][:120], e["response"]["status"])
        for e in entries
        if e["response"]["status"] >= 500 and not halted(e)
    ]
    accepted = set()
    sim_writes = False
    for e in entries:
        url, code = e["request"]["url"], e["response"]["status"]
        if "/api/orders/execute" in url and code == 202:
            accepted.add(str(json.loads(e["response"]["content"]["text"])["orderId"]))
        if "/api/sim/" in url and 200 <= code < 300:
            sim_writes = True
    summary = [line for line in done.stdout.splitlines() if "generated" in line or "issues" in line.lower() or "passed" in line]
    print(
        f"\nschemathesis: {len(entries)} requests in {took:.1f} s over {len(operations)} operations "
        f"({', '.join(f'{k} {v}' for k, v in sorted(operations.items()))}), answers {dict(sorted(statuses.items()))}, "
        f"server errors {len(server_errors)}, accepted orders {len(accepted)}; {' | '.join(s.strip() for s in summary[-3:])}"
    )
    assert done.returncode == 0, done.stdout[-4000:]
    assert not server_errors, server_errors[:10]
    assert len(entries) >= 200, f"only {len(entries)} requests: schemathesis did not really run"
    new_routes = {
        "POST /api/keys",
        "GET /api/keys",
        "DELETE /api/keys/{keyId}",
        "GET /api/admin/trading-state",
        "PUT /api/admin/trading-state",
        "GET /api/admin/accounts/{account}/limits",
        "PUT /api/admin/accounts/{account}/limits",
        "GET /livez",
        "GET /readyz",
    }
    assert new_routes <= set(operations), f"not exercised: {sorted(new_routes - set(operations))}"
    async with httpx.AsyncClient(base_url=proc.url, timeout=30, headers=AUTH) as client:  # whatever schemathesis halted
        state = (await client.get("/api/admin/trading-state")).json()
        for scope in [*state.get("haltedPairs", []), *([state] if state.get("state") == "halted" else [])]:
            pair = {"pair": scope["pair"]} if "pair" in scope else {}
            await client.put("/api/admin/trading-state", json={"state": "active", "reason": "after schemathesis", **pair})
    await assert_only_accepted_stored(stack, before, accepted, allowed_keys={"sim_pairs"} if sim_writes else set())
