"""GET /metrics and request ids on the running engine: the counters and histograms move by what real orders
did, every answer carries X-Request-ID, and the engine's log lines for an order name its request and order.

The ingress replica's own counts are fresh at every scrape and the actors are asked at each scrape, but
other replicas push every OEE_METRICS_PUSH_S and Ray forwards log lines with a delay: every check waits
for its condition, with a generous deadline (the machine may be loaded by other jobs).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.wsclient import follow, statuses
from tests.engine_process import EngineProcess

DEADLINE_S = 90.0
MARKET = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1.5, "orderType": "MARKET"}
STAGES = ("queue_wait", "routing", "building", "landing", "end_to_end")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Scrape:
    """One answer of /metrics, parsed by Prometheus' own parser."""

    def __init__(self, text: str) -> None:
        self.families = {family.name: family for family in text_string_to_metric_families(text)}
        self.samples: Samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value for family in self.families.values() for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def has(self, name: str, **labels: str) -> bool:
        wanted = set(labels.items())
        return any(n == name and wanted <= ls for n, ls in self.samples)


async def scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(response.text)


async def scrape_until(client: httpx.AsyncClient, condition: Callable[[Scrape], bool], what: str) -> Scrape:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        now = await scrape(client)
        if condition(now):
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {DEADLINE_S:.0f} s")
        await asyncio.sleep(0.5)


async def test_counters_and_histograms_move_by_what_real_orders_did(engine: EngineProcess) -> None:
    orders = 3
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as client:
        before = await scrape(client)
        ids = []
        for _ in range(orders):
            response = await client.post("/api/orders/execute", json=MARKET)
            assert response.status_code == 202, response.text
            ids.append(response.json()["orderId"])
        streams = await asyncio.gather(*(follow(engine.ws_url, order_id) for order_id in ids))
        assert all(statuses(messages)[-1] == "confirmed" for messages, _ in streams)

        def moved(now: Scrape) -> bool:
            grew = now.value("oee_orders_finished_total", status="confirmed", order_type="MARKET") - before.value(
                "oee_orders_finished_total", status="confirmed", order_type="MARKET"
            )
            return grew >= orders

        after = await scrape_until(client, moved, f"{orders} more confirmed MARKET orders")

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("oee_orders_submitted_total", order_type="MARKET") >= orders
    assert delta("oee_http_requests_total", route="/api/orders/execute", method="POST", status="202") >= orders
    assert delta("oee_http_request_seconds_count", route="/api/orders/execute", method="POST") >= orders
    for stage in STAGES:
        assert delta("oee_stage_seconds_count", stage=stage) >= orders, stage
        assert delta("oee_stage_seconds_bucket", stage=stage, le="+Inf") >= orders, stage
    # the simulated swap takes 40-80 ms here: the landing stage's time is real, not zero
    assert delta("oee_stage_seconds_sum", stage="landing") >= orders * 0.035
    assert delta("oee_stage_seconds_sum", stage="end_to_end") >= delta("oee_stage_seconds_sum", stage="landing")
    for venue in ("raydium", "meteora"):  # every order asks both venues for a quote
        assert delta("oee_venue_requests_total", venue=venue, operation="quote", outcome="ok") >= orders, venue
        assert delta("oee_venue_request_seconds_count", venue=venue, operation="quote") >= orders, venue
    assert delta("oee_venue_requests_total", operation="swap", outcome="ok") >= orders
    assert delta("oee_venue_request_seconds_sum", operation="swap") >= orders * 0.035

    # what is read live, and every process that reports
    for gauge in ("oee_queue_depth", "oee_open_orders", "oee_rate_limiter_tokens", "oee_orders_running", "oee_orders_waiting"):
        assert after.has(gauge), gauge
    assert after.value("oee_open_orders") >= 0 and after.value("oee_queue_depth") >= 0
    roles = {dict(labels)["role"] for name, labels in after.samples if name == "oee_metrics_sources"}
    assert {"Ingress", "OrderExecutor", "Dispatcher", "PriceWatcher", "RaydiumQuoter", "MeteoraQuoter"} <= roles
    for family in ("oee_retries", "oee_store_errors", "oee_websocket_connections", "oee_venue_unreachable"):
        assert family in after.families, family  # declared even before anything is counted
    assert all(name.startswith("oee_") for name in after.families)


async def test_websocket_connections_are_a_live_gauge(engine: EngineProcess) -> None:
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as client:
        order_id = (await client.post("/api/orders/execute", json={**MARKET, "orderType": "LIMIT", "limitPrice": 1e6})).json()["orderId"]
        async with websockets.connect(f"{engine.ws_url}/api/orders/{order_id}/status") as ws:
            await ws.recv()  # connected
            await scrape_until(client, lambda now: now.value("oee_websocket_connections") >= 1, "an open WebSocket")
        await client.delete(f"/api/orders/{order_id}")


async def test_every_answer_carries_a_request_id(engine: EngineProcess) -> None:
    sent = f"e2e-{secrets.token_hex(6)}"
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as client:
        answers = [
            await client.get("/health", headers={"X-Request-ID": f"{sent}-health"}),
            await client.get("/metrics", headers={"X-Request-ID": f"{sent}-metrics"}),
            await client.get("/api/orders/order_0000000000000_00000000", headers={"X-Request-ID": f"{sent}-404"}),
            await client.get("/no/such/route", headers={"X-Request-ID": f"{sent}-unmatched"}),
            await client.post("/api/orders/execute", content=b"{not json", headers={"X-Request-ID": f"{sent}-400"}),
        ]
        for answer, suffix in zip(answers, ("health", "metrics", "404", "unmatched", "400"), strict=True):
            assert answer.headers.get_list("x-request-id") == [f"{sent}-{suffix}"], (answer.request.url, answer.headers)
        generated = [await client.get("/health"), await client.get("/metrics")]
        ids = [answer.headers.get_list("x-request-id") for answer in generated]
        assert all(len(found) == 1 and found[0] for found in ids) and ids[0] != ids[1], ids

    async with websockets.connect(
        f"{engine.ws_url}/api/orders/order_0000000000000_00000000/status", additional_headers={"X-Request-ID": f"{sent}-ws"}
    ) as ws:
        assert ws.response is not None and ws.response.headers.get("x-request-id") == f"{sent}-ws"
        assert json.loads(await ws.recv())["type"] == "error"


def lines_of(log: Path) -> list[dict[str, Any]]:
    """The engine's JSON log lines (Ray prefixes an actor's or replica's lines with its name and pid)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            body = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(body, dict) and "msg" in body:
            found.append(body)
    return found


async def test_log_lines_for_an_order_name_its_request_and_order(engine: EngineProcess) -> None:
    submit_id, cancel_id = f"e2e-submit-{secrets.token_hex(4)}", f"e2e-cancel-{secrets.token_hex(4)}"
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as client:
        body = {**MARKET, "orderType": "LIMIT", "limitPrice": 1e6}  # far above the market: it waits
        response = await client.post("/api/orders/execute", json=body, headers={"X-Request-ID": submit_id})
        assert response.status_code == 202 and response.headers.get_list("x-request-id") == [submit_id]
        order_id = response.json()["orderId"]
        cancelled = await client.delete(f"/api/orders/{order_id}", headers={"X-Request-ID": cancel_id})
        assert cancelled.status_code in (200, 202), cancelled.text
        assert cancelled.headers.get_list("x-request-id") == [cancel_id]

    deadline = time.monotonic() + DEADLINE_S
    while True:
        ours = [line for line in lines_of(engine.log_path) if line.get("orderId") == order_id]
        if any(line["msg"] == "cancel requested" for line in ours):
            break
        assert time.monotonic() < deadline, f"no 'cancel requested' line for {order_id}: {ours}"
        await asyncio.sleep(0.5)
    cancel = next(line for line in ours if line["msg"] == "cancel requested")
    assert (cancel["requestId"], cancel["orderId"], cancel["logger"]) == (cancel_id, order_id, "api.orders")
    assert all(line.get("requestId") in (None, submit_id, cancel_id) for line in ours)  # no other request's id
