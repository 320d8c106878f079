"""Locust scenarios for the order execution engine: HTTP pollers and WebSocket followers.

Run headless against a running engine (see README.md, "Load test")::

    .venv/bin/locust -f loadtest/locustfile.py --headless -u 10 -r 5 -t 30s --host http://127.0.0.1:8000

* ``OrderHttpUser`` submits a market order and polls ``GET /api/orders/{id}`` until it is terminal.
* ``OrderWebSocketUser`` submits a market order and follows ``/api/orders/{id}/status`` until it is
  terminal; one "WS / order stream" sample per order, timed from submit to the terminal event.

Both users wait for their own order before submitting the next one (a closed loop), so the
engine's admission limit (100 orders/min by default) sets the pace: with U users an order waits
roughly U / (OEE_RATE_LIMIT_PER_MINUTE / 60) seconds in the queue. Keep U well below 50 at the
default limit, or raise OEE_RATE_LIMIT_PER_MINUTE, or the 30 s deadline (LOCUST_ORDER_TIMEOUT_S) is hit.

An order that ends in any terminal state but ``confirmed`` is counted as a locust failure (with the engine's
failureReason, or why it was cancelled or expired).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from typing import Any

import websockets.sync.client
from locust import FastHttpUser, User, between, task
from locust.contrib.fasthttp import FastHttpSession
from websockets.exceptions import ConnectionClosed, WebSocketException

from engine.lifecycle import TERMINAL

ORDER_TIMEOUT_S = float(os.environ.get("LOCUST_ORDER_TIMEOUT_S", "30"))
POLL_INTERVAL_S = 0.5

# (tokenIn, tokenOut, smallest amount, largest amount): listed pairs that at least one venue trades
# (engine/market.py CATALOGUE), with amounts of a few dollars to a few hundred.
ORDERS: tuple[tuple[str, str, float, float], ...] = (
    ("SOL", "USDC", 0.05, 2.0),  # both venues
    ("USDC", "SOL", 5.0, 300.0),  # both venues
    ("BONK", "SOL", 100_000.0, 5_000_000.0),  # both venues
    ("JUP", "USDC", 10.0, 400.0),  # Raydium only
)


class OrderFailed(Exception):
    """The order reached a terminal state other than ``confirmed``, or never reached one."""


SLIPPAGE_BPS = int(os.environ.get("LOCUST_SLIPPAGE_BPS", "150"))
"""The users' slippage tolerance. The simulated pools drift and every user's swap moves them, over a 2-3 s
swap; at the API's default 50 bps, 1 order of 55 in a default 30 s run failed on slippage (a correct outcome,
but a load test measures the engine, not the simulated market)."""


def random_order() -> dict[str, Any]:
    token_in, token_out, low, high = random.choice(ORDERS)
    amount = round(random.uniform(low, high), 6)
    return {"tokenIn": token_in, "tokenOut": token_out, "amount": amount, "orderType": "MARKET", "slippageBps": SLIPPAGE_BPS}


def submit(client: FastHttpSession) -> str | None:
    """POST one order; return its id, or None after marking the request failed."""
    with client.post(
        "/api/orders/execute",
        json=random_order(),
        headers={"Idempotency-Key": uuid.uuid4().hex},
        name="/api/orders/execute",
        catch_response=True,
    ) as response:
        if response.status_code != 202:
            response.failure(f"expected 202, got {response.status_code}: {(response.text or '')[:200]}")
            return None
        try:
            order_id = response.json()["orderId"]
        except (ValueError, KeyError, TypeError) as exc:
            response.failure(f"202 without an orderId: {exc!r}")
            return None
        response.success()
        return str(order_id)


class OrderHttpUser(FastHttpUser):
    """Submit an order, then poll its state every 0.5 s until confirmed/failed or the deadline."""

    weight = 4
    wait_time = between(0.5, 2.0)

    @task
    def submit_and_poll(self) -> None:
        started = time.perf_counter()
        order_id = submit(self.client)
        if order_id is None:
            return
        deadline = started + ORDER_TIMEOUT_S
        status = "pending"
        body: dict[str, Any] = {}
        while time.perf_counter() < deadline:
            time.sleep(POLL_INTERVAL_S)
            with self.client.get(f"/api/orders/{order_id}", name="/api/orders/[id]", catch_response=True) as response:
                if response.status_code != 200:
                    response.failure(f"expected 200, got {response.status_code}: {(response.text or '')[:200]}")
                    continue
                try:
                    body = response.json()
                    status = body["status"]
                except (ValueError, KeyError, TypeError) as exc:
                    response.failure(f"unreadable order: {exc!r}")
                    continue
                response.success()
            if status in TERMINAL:
                break
        elapsed_ms = (time.perf_counter() - started) * 1000
        error: Exception | None = None
        if status not in TERMINAL:
            error = OrderFailed(f"not terminal after {ORDER_TIMEOUT_S:g} s (last status {status})")
        elif status != "confirmed":
            error = OrderFailed(f"order {status}: {body.get('failureReason')}")
        self.environment.events.request.fire(
            request_type="HTTP",
            name="order completion (polled)",
            response_time=elapsed_ms,
            response_length=0,
            exception=error,
            context={"orderId": order_id, "status": status},
        )


class OrderWebSocketUser(User):
    """Submit an order over HTTP, then follow its WebSocket stream until the terminal event."""

    weight = 1
    wait_time = between(0.5, 2.0)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        base = (self.host or "http://127.0.0.1:8000").rstrip("/")
        self.ws_base = "ws" + base.removeprefix("http")  # http -> ws, https -> wss
        self.client = FastHttpSession(base, request_event=environment.events.request, user=self)

    @task
    def submit_and_follow(self) -> None:
        started = time.perf_counter()
        order_id = submit(self.client)
        if order_id is None:
            return
        error: Exception | None = None
        received = 0
        status = "pending"
        try:
            status, received, reason = self._follow(order_id, started + ORDER_TIMEOUT_S)
            if status not in TERMINAL:
                error = OrderFailed(f"stream ended without a terminal event (last status {status}, {reason})")
            elif status != "confirmed":
                error = OrderFailed(f"order {status}: {reason}")
        except TimeoutError:
            error = OrderFailed(f"no terminal event within {ORDER_TIMEOUT_S:g} s")
        except (OSError, WebSocketException, ValueError) as exc:
            error = exc
        self.environment.events.request.fire(
            request_type="WS",
            name="order stream",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=received,
            exception=error,
            context={"orderId": order_id},
        )

    def _follow(self, order_id: str, deadline: float) -> tuple[str, int, str | None]:
        """Read the stream until a terminal status; return (last status, messages read, reason)."""
        status = "pending"
        received = 0
        url = f"{self.ws_base}/api/orders/{order_id}/status"
        with websockets.sync.client.connect(url, open_timeout=10, close_timeout=2, proxy=None) as ws:
            while True:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise TimeoutError
                try:
                    raw = ws.recv(timeout=remaining)
                except ConnectionClosed as closed:
                    return status, received, f"closed with code {closed.rcvd.code if closed.rcvd else None}"
                received += 1
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "error":
                    return status, received, str(message.get("message"))
                if kind == "status":
                    status = message["status"]
                    if status in TERMINAL:
                        return status, received, message.get("message")  # the failureReason when it failed
