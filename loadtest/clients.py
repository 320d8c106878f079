"""The benchmark's clients: a closed-loop HTTP load generator and a WebSocket subscriber.

Client library: **aiohttp** (installed with ``ray[serve]``), for HTTP and WebSockets both, not
``httpx.AsyncClient``. On this 2-core machine the load generator shares the CPU with the engine, so the
client's CPU per request is taken from the engine being measured, and it caps what a client can measure.
Measured here (2026-11-25, 3,000 keep-alive GETs at 10 connections to a local aiohttp server, uvloop):
aiohttp 0.05-0.06 ms of client CPU per request (13-22 k req/s), httpx 0.86-0.92 ms (0.9-1.2 k req/s).
httpx (h11, a pure-Python parser, under anyio and its pool) would itself cap near the 1,425 req/s goal;
aiohttp parses with its C extension (llhttp). One ``aiohttp.ClientSession`` per run with
``TCPConnector(limit=concurrency)``, so exactly ``concurrency`` keep-alive connections are open; each
run reports the client's CPU per request. uvloop drives the loop when installed (it is, with ray[serve]).

All times are ``time.perf_counter`` for durations, and ``time.time`` (epoch) only where a figure is
compared with the engine's epoch-ms ``timestamp`` fields (same machine, same clock; whole milliseconds,
so a latency read against them is good to about 1 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from engine.lifecycle import TERMINAL as LIFECYCLE_TERMINAL

TERMINAL = frozenset(s.value for s in LIFECYCLE_TERMINAL)

# Listed pairs that at least one venue trades (engine/market.py), with small amounts.
_ORDERS: tuple[tuple[str, str, float, float], ...] = (
    ("SOL", "USDC", 0.05, 2.0),
    ("USDC", "SOL", 5.0, 300.0),
    ("BONK", "SOL", 100_000.0, 5_000_000.0),
    ("JUP", "USDC", 10.0, 400.0),
)


def order_bodies(count: int = 512, seed: int = 11) -> list[bytes]:
    """Pre-encoded order bodies, so the client spends no CPU on JSON while it measures."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        token_in, token_out, low, high = rng.choice(_ORDERS)
        body = {"tokenIn": token_in, "tokenOut": token_out, "amount": round(rng.uniform(low, high), 6), "orderType": "MARKET"}
        out.append(json.dumps(body).encode())
    return out


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    low = math.floor(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class HttpRun:
    """One closed-loop run: ``concurrency`` workers, each sending its next request when the last answered."""

    label: str
    method: str
    path: str
    concurrency: int
    duration_s: float = 0.0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "request": f"{self.method} {self.path}",
            "concurrency": self.concurrency,
            "duration_s": round(self.duration_s, 2),
            "ok": self.ok,
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "rps": round(self.rps, 1),
            "p50_ms": rounded(percentile(self.latencies_ms, 50)),
            "p99_ms": rounded(percentile(self.latencies_ms, 99)),
            "max_ms": rounded(max(self.latencies_ms, default=0.0)),
            "client_cpu_ms_per_request": rounded(1000 * self.client_cpu_s / max(1, self.ok + sum(self.errors.values())), 3),
        }


async def http_load(
    base_url: str,
    method: str,
    path: str,
    concurrency: int,
    duration_s: float,
    *,
    label: str,
    expect: int,
    bodies: Sequence[bytes] | None = None,
    on_ok: Callable[[bytes], None] | None = None,
    gate: Callable[[], bool] | None = None,
    stop: asyncio.Event | None = None,
    idempotency_keys: bool = True,
    headers: dict[str, str] | None = None,
) -> HttpRun:
    """Run ``concurrency`` closed-loop workers for ``duration_s`` (or until ``stop``).

    A request counts as ok when it answers ``expect``; anything else (another status, a timeout, a
    connection error) is an error, by kind. ``gate`` (if given) is asked before each request and holds
    the worker while it says False (used to bound the engine's backlog).
    """
    run = HttpRun(label, method, path, concurrency)
    url = base_url + path
    headers = {**({"Content-Type": "application/json"} if bodies else {}), **(headers or {})}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False, enable_cleanup_closed=False)
    timeout = aiohttp.ClientTimeout(total=30)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker(index: int) -> None:
            i = index
            while not stop.is_set() and loop.time() < deadline:
                if gate is not None and not gate():
                    await asyncio.sleep(0.005)
                    continue
                i += concurrency
                kwargs: dict[str, Any] = {}
                if bodies:
                    kwargs["data"] = bodies[i % len(bodies)]
                    kwargs["headers"] = {**headers, "Idempotency-Key": uuid.uuid4().hex} if idempotency_keys else headers
                elif headers:
                    kwargs["headers"] = headers
                t0 = time.perf_counter()
                try:
                    async with session.request(method, url, **kwargs) as resp:
                        payload = await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    run.errors[type(exc).__name__] += 1
                    continue
                elapsed = (time.perf_counter() - t0) * 1000
                if status != expect:
                    run.errors[f"http {status}"] += 1
                    continue
                run.ok += 1
                run.latencies_ms.append(elapsed)
                if on_ok is not None:
                    on_ok(payload)

        cpu0 = time.process_time()
        t0 = time.perf_counter()
        deadline = loop.time() + duration_s
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        run.duration_s = time.perf_counter() - t0
        run.client_cpu_s = time.process_time() - cpu0
    return run


async def submit_orders(base_url: str, count: int, concurrency: int = 10) -> tuple[list[str], Counter[str]]:
    """POST ``count`` orders; return the accepted ids (in acceptance order) and the errors by kind."""
    ids: list[str] = []
    errors: Counter[str] = Counter()
    bodies = order_bodies(max(count, 1), seed=count)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies[:count]:
        queue.put_nowait(body)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                headers = {"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
                try:
                    async with session.post(f"{base_url}/api/orders/execute", data=body, headers=headers) as resp:
                        if resp.status == 202:
                            ids.append((await resp.json())["orderId"])
                        else:
                            errors[f"http {resp.status}"] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors[type(exc).__name__] += 1

        await asyncio.gather(*(worker() for _ in range(min(concurrency, max(count, 1)))))
    return ids, errors


@dataclass
class Subscription:
    """What one WebSocket client saw: every status event with its receipt time."""

    order_id: str
    connected_ms: float | None = None
    closed_ms: float | None = None
    events: list[tuple[int, str, float, float]] = field(default_factory=list)  # (seq, status, timestamp, received epoch ms)
    close_code: int | None = None
    error: str | None = None

    @property
    def terminal(self) -> bool:
        return any(status in TERMINAL for _, status, _, _ in self.events)


class OpenSockets:
    """How many subscriber sockets are open now, and the most at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def opened(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def closed(self) -> None:
        self.now -= 1


async def subscribe(
    session: aiohttp.ClientSession,
    ws_base: str,
    order_id: str,
    handshakes: asyncio.Semaphore,
    connected: asyncio.Future[None],
    sockets: OpenSockets,
    timeout_s: float,
) -> Subscription:
    """Follow one order's stream until the server closes it (after the terminal event) or the timeout."""
    sub = Subscription(order_id)
    url = f"{ws_base}/api/orders/{order_id}/status"
    try:
        async with asyncio.timeout(timeout_s):
            async with handshakes:
                ws = await session.ws_connect(url, autoping=True, heartbeat=None, max_msg_size=2**20)
            sub.connected_ms = time.time() * 1000
            sockets.opened()
            if not connected.done():
                connected.set_result(None)
            try:
                async for msg in ws:
                    received = time.time() * 1000
                    if msg.type is aiohttp.WSMsgType.TEXT:
                        data = json.loads(msg.data)
                        if data.get("type") == "status":
                            sub.events.append((int(data["seq"]), str(data["status"]), float(data["timestamp"]), received))
                        elif data.get("type") == "error":
                            sub.error = f"server error: {data.get('message')}"
                    elif msg.type is aiohttp.WSMsgType.ERROR:
                        sub.error = f"ws error: {ws.exception()!r}"
                        break
                sub.close_code = ws.close_code
            finally:
                sub.closed_ms = time.time() * 1000
                sockets.closed()
                await ws.close()
    except TimeoutError:
        sub.error = sub.error or "timeout"
    except aiohttp.ClientError as exc:
        sub.error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        if not connected.done():
            connected.set_result(None)
    return sub


class LoopLag:
    """Measures how late this process's event loop wakes up (the client's own share of a latency),
    and the garbage collector's pauses in it, each with when it ended (epoch ms): a late event can
    then be checked against the client's own stalls while it was on its way."""

    def __init__(self, every_s: float = 0.01) -> None:
        self.every_s = every_s
        self.lags_ms: list[float] = []
        self.stalls: list[tuple[float, float]] = []  # (ended at, epoch ms; loop wake-up lag or GC pause, ms) over 5 ms
        self.gc_pauses: list[tuple[float, int, float]] = []  # (ended at, epoch ms; generation; ms)
        self._gc_started = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.every_s)
            lag = max(0.0, (time.perf_counter() - t0 - self.every_s) * 1000)
            self.lags_ms.append(lag)
            if lag > 5:
                self.stalls.append((time.time() * 1000, lag))

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        pause = (time.perf_counter() - self._gc_started) * 1000
        if pause > 5:
            now = time.time() * 1000
            self.gc_pauses.append((now, info.get("generation", -1), pause))
            self.stalls.append((now, pause))

    def stall_during(self, start_ms: float, end_ms: float) -> float:
        """The longest stall of this process that ended in ``[start_ms, end_ms + every]``, ms (0 if none)."""
        end = end_ms + self.every_s * 1000
        return max((ms for at, ms in self.stalls if start_ms <= at <= end), default=0.0)

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
