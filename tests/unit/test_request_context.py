"""Every request's id (echoed, generated, in the log lines) and its HTTP metrics; GET /metrics as text
Prometheus parses. The app runs in-process (no Serve, no stores)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, WebSocket
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from api.app import EngineApp, create_app
from api.auth import caller
from api.middleware import UNMATCHED, RequestContext
from engine.accounts import LOCAL_PRINCIPAL
from engine.batching import Coalescer
from engine.instruments import HTTP_REQUESTS, HTTP_SECONDS, WEBSOCKETS
from engine.logs import ACCOUNT, ORDER_ID, REQUEST_ID, JsonFormatter, bind, detached

log = logging.getLogger("engine.test_request_context")


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """The JSON lines ``engine.test_request_context`` writes during the test."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield out
    finally:
        log.removeHandler(handler)


def parsed(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def small_app(upstream: str | None = None) -> FastAPI:
    app = EngineApp()

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str | None]:
        bind(order_id=thing_id)
        log.info("handling a thing")
        return {"requestId": REQUEST_ID.get()}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unexpected")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"requestId": REQUEST_ID.get(), "sockets": WEBSOCKETS.value()})
        await websocket.close()

    if upstream is not None:  # as under Ray Serve: the request already has an id, which Serve echoes itself
        app.build_middleware_stack = lambda: RequestContext(FastAPI.build_middleware_stack(app), upstream_id=lambda: upstream)  # type: ignore[method-assign]
    return app


def test_a_sent_request_id_is_echoed_once_and_set_for_the_handler(lines: io.StringIO) -> None:
    client = TestClient(small_app())
    response = client.get("/things/t-1", headers={"X-Request-ID": "client-chosen-42"})

    assert response.status_code == 200
    assert response.headers.get_list("x-request-id") == ["client-chosen-42"]
    assert response.json() == {"requestId": "client-chosen-42"}
    [line] = parsed(lines)
    assert (line["msg"], line["requestId"], line["orderId"]) == ("handling a thing", "client-chosen-42", "t-1")
    assert REQUEST_ID.get() is None  # reset after the request


def test_an_id_is_generated_when_absent_or_unusable() -> None:
    client = TestClient(small_app())
    first = client.get("/things/a").headers.get_list("x-request-id")
    second = client.get("/things/a").headers.get_list("x-request-id")
    too_long = client.get("/things/a", headers={"X-Request-ID": "x" * 500}).headers.get_list("x-request-id")

    assert len(first) == len(second) == len(too_long) == 1
    assert first != second
    assert len(first[0]) == 32 and len(too_long[0]) == 32


def test_every_answer_carries_an_id_even_an_unexpected_error_and_a_404() -> None:
    client = TestClient(small_app(), raise_server_exceptions=False)
    boom = client.get("/boom", headers={"X-Request-ID": "r-500"})
    missing = client.get("/nowhere", headers={"X-Request-ID": "r-404"})

    assert (boom.status_code, boom.headers.get_list("x-request-id")) == (500, ["r-500"])
    assert (missing.status_code, missing.headers.get_list("x-request-id")) == (404, ["r-404"])


def test_under_serve_the_id_is_serves_and_not_echoed_a_second_time() -> None:
    client = TestClient(small_app(upstream="serve-id-7"))
    response = client.get("/things/a", headers={"X-Request-ID": "serve-id-7"})  # Serve put it there (or the client did)

    assert response.headers.get_list("x-request-id") == []  # Serve's own middleware adds it, once
    assert response.json() == {"requestId": "serve-id-7"}


def test_a_websocket_handshake_gets_an_id_and_counts_as_a_connection() -> None:
    client = TestClient(small_app())
    before = WEBSOCKETS.value()
    with client.websocket_connect("/ws", headers={"X-Request-ID": "ws-1"}) as ws:
        message = ws.receive_json()
    assert message == {"requestId": "ws-1", "sockets": before + 1}
    assert WEBSOCKETS.value() == before


def test_requests_are_counted_by_route_template_method_and_status() -> None:
    client = TestClient(small_app(), raise_server_exceptions=False)
    before = {
        "thing": HTTP_REQUESTS.value("/things/{thing_id}", "GET", "200"),
        "missing": HTTP_REQUESTS.value(UNMATCHED, "GET", "404"),
        "boom": HTTP_REQUESTS.value("/boom", "GET", "500"),
        "odd": HTTP_REQUESTS.value("/things/{thing_id}", "other", "405"),
        "timed": HTTP_SECONDS.value("/things/{thing_id}", "GET").count,
    }
    client.get("/things/1")
    client.get("/things/2")
    client.get("/a/b/c")
    client.get("/boom")
    client.request("BREW", "/things/1")

    assert HTTP_REQUESTS.value("/things/{thing_id}", "GET", "200") == before["thing"] + 2  # one series, not one per id
    assert HTTP_REQUESTS.value(UNMATCHED, "GET", "404") == before["missing"] + 1
    assert HTTP_REQUESTS.value("/boom", "GET", "500") == before["boom"] + 1
    assert HTTP_REQUESTS.value("/things/{thing_id}", "other", "405") == before["odd"] + 1
    assert HTTP_SECONDS.value("/things/{thing_id}", "GET").count == before["timed"] + 2


def test_routes_without_a_template_get_a_bounded_label() -> None:
    client = TestClient(create_app())
    before = HTTP_REQUESTS.value("/console/{path}", "GET", "404")
    for name in ("a.js", "b.js", "c/d.css"):
        client.get(f"/console/{name}")  # files the console does not have: one label for them all
    assert HTTP_REQUESTS.value("/console/{path}", "GET", "404") == before + 3
    docs = HTTP_REQUESTS.value("/docs", "GET", "200")
    client.get("/docs")
    assert HTTP_REQUESTS.value("/docs", "GET", "200") == docs + 1


def test_metrics_answer_prometheus_text_with_this_process_alone_without_a_collector() -> None:
    app = create_app()
    app.dependency_overrides[caller] = lambda: LOCAL_PRINCIPAL  # open local mode, without an Edge in this process
    client = TestClient(app)
    client.get("/openapi.json")
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert {"oee_http_requests", "oee_http_request_seconds", "oee_orders_submitted", "oee_stage_seconds"} <= set(families)
    assert all(name.startswith("oee_") for name in families)
    assert families["oee_stage_seconds"].type == "histogram"
    openapi = [s for s in families["oee_http_requests"].samples if s.labels.get("route") == "/openapi.json" and s.name.endswith("_total")]
    assert openapi and openapi[0].value >= 1


def test_log_lines_carry_order_and_account_where_known(lines: io.StringIO) -> None:
    async def handle(order_id: str) -> None:
        bind(order_id=order_id, account="acct-9")
        log.info("inside")

    asyncio.run(handle("order-1"))
    log.info("outside", extra={"order_id": "order-2"})  # a call site's own order_id names the order too
    log.info("nothing known")

    inside, outside, nothing = parsed(lines)
    assert (inside["orderId"], inside["account"]) == ("order-1", "acct-9")
    assert outside["orderId"] == "order-2" and "account" not in outside
    assert not {"requestId", "orderId", "account"} & set(nothing)
    assert ORDER_ID.get() is None and ACCOUNT.get() is None


async def test_a_batch_flush_logs_for_none_of_its_callers(lines: io.StringIO) -> None:
    async def flush(items: list[str]) -> list[None]:
        log.info("flushing", extra={"items": len(items)})
        return [None] * len(items)

    coalescer: Coalescer[str, None] = Coalescer(flush)

    async def caller(order_id: str) -> None:
        bind(order_id=order_id)
        REQUEST_ID.set(f"req-{order_id}")
        await coalescer.submit(order_id)
        log.info("submitted")

    await asyncio.gather(caller("o-1"), caller("o-2"))
    by_msg = [(line["msg"], line.get("orderId"), line.get("requestId")) for line in parsed(lines)]
    assert ("flushing", None, None) in by_msg
    assert sorted(m for m in by_msg if m[0] == "submitted") == [("submitted", "o-1", "req-o-1"), ("submitted", "o-2", "req-o-2")]
    context = detached()
    assert context.run(ORDER_ID.get) is None
