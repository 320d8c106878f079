"""The HTTP and WebSocket edge: a Ray Serve deployment with a FastAPI ingress, and the engine's entry point.

This module only translates: HTTP bodies to :mod:`engine.intake`, lookups to the
stores, WebSockets to :mod:`actors.subscriptions`. ``python serve_app.py`` starts
the whole engine in the foreground (Ray, actors, Serve) and stops it cleanly on
SIGINT/SIGTERM.
"""

import asyncio
import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors.gc_tuning import tune_garbage_collection
from actors.subscriptions import CATCH_UP, ReplicaSubscriptions, is_whole
from engine.adapters import redis_store
from engine.adapters.postgres import PostgresJournal, create_pool
from engine.adapters.redis_store import Band, RedisOrders
from engine.errors import StoreUnavailable
from engine.ids import parse_order_id
from engine.intake import Accepted, OrderIntake, Rejection, parse_order
from engine.lifecycle import TERMINAL as LIFECYCLE_TERMINAL
from engine.lifecycle import is_terminal
from engine.logs import setup_logging
from engine.models import Order, OrderRequest, OrderStatus, OrderType, TokenName, VenueName, iso_ms
from engine.settings import Settings, get_settings
from engine.tokens import canonical_token

log = logging.getLogger("serve_app")

ROOT = Path(__file__).resolve().parent
TERMINAL = frozenset(s.value for s in LIFECYCLE_TERMINAL)
IDEMPOTENCY_KEY_MAX = 255
CANCEL_WAIT_S = 3.0
QUIET_CHECK_S = 30.0
"""A stream with no event for this long reads PostgreSQL (a safety net: hub trouble triggers a read at once)."""
ENCODED_KEEP = 20_000


class OrderAccepted(BaseModel):
    orderId: str = Field(examples=["order_1764032400000_1a2b3c4d"])
    status: str = Field(examples=["pending"])
    message: str


class ErrorDetail(BaseModel):
    path: list[str | int]
    message: str
    code: str


class SimPool(BaseModel):
    """A pool to list (simulation admin). Tokens are symbols or base58 mints; reserves in human units."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
    venue: VenueName
    base: TokenName
    quote: TokenName
    reserve_base: float = Field(gt=0, le=1e15, allow_inf_nan=False)
    reserve_quote: float = Field(gt=0, le=1e15, allow_inf_nan=False)


class SimPriceMove(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
    venue: VenueName
    base: TokenName
    quote: TokenName
    percent: float = Field(gt=-99, lt=1000, allow_inf_nan=False)


def encode_cursor(order: Order) -> str:
    return base64.urlsafe_b64encode(f"{order.submitted_at!r}|{order.order_id}".encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> tuple[float, str] | None:
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        ms, _, order_id = text.partition("|")
        value = float(ms)
    except (ValueError, UnicodeDecodeError):
        return None
    if parse_order_id(order_id) is None or not (0 < value < 1e15):
        return None
    return value, order_id


class ErrorBody(BaseModel):
    error: str
    message: str | None = None
    details: list[ErrorDetail] | None = None


app = FastAPI(
    title="Order Execution Engine",
    version="0.1.0",
    description="Routes and executes Solana DEX swaps (Raydium, Meteora; simulated) and streams each order's lifecycle.",
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Validation failed, invalid JSON or unsupported pair"},
    413: {"model": ErrorBody, "description": "Body larger than the limit (16 KiB)"},
    415: {"model": ErrorBody, "description": "Body is not JSON"},
    422: {"model": ErrorBody, "description": "Idempotency-Key reused with a different body"},
    503: {"model": ErrorBody, "description": "PostgreSQL or Redis unavailable: nothing was accepted"},
}


def _error(status: int, error: str, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    return JSONResponse(Rejection(status, error, message, details or []).body(), status_code=status)


@app.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _error(exc.status_code, "Not found" if exc.status_code == 404 else "HTTP error", str(exc.detail))


@app.exception_handler(RequestValidationError)
async def _request_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    details = [{"path": [p for p in e["loc"]], "message": e["msg"], "code": e["type"]} for e in exc.errors()]
    return _error(400, "Validation failed", "the request is not valid", details)


def _openapi() -> dict[str, Any]:
    """The generated schema plus the order body, which the handler parses itself (to control errors and size)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        body_schema = OrderRequest.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        for name, definition in body_schema.pop("$defs", {}).items():
            schema["components"]["schemas"][name] = definition
        schema["components"]["schemas"]["OrderRequest"] = body_schema
        app.openapi_schema = schema
    return app.openapi_schema


app.openapi = _openapi  # type: ignore[method-assign]


async def _read_body(request: Request, limit: int) -> bytes | Rejection:
    """Read at most ``limit`` bytes; refuse larger bodies without reading them into memory."""
    declared = request.headers.get("content-length")
    too_large = Rejection(413, "Payload too large", f"the body must be at most {limit} bytes")
    if declared is not None and not declared.isdigit():
        return Rejection(400, "Bad request", "Content-Length must be a number of bytes")
    if declared is not None and int(declared) > limit:
        return too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _implicit_key() -> str | None:
    """Serve's request id as an idempotency key: a request the proxy retries keeps its id, so a
    retry after the order was stored returns that order instead of creating a second one."""
    from ray.serve.context import _get_serve_request_context

    request_id = _get_serve_request_context().request_id
    return f"serve-request:{request_id}" if request_id else None


async def _refuse(websocket: WebSocket) -> None:
    await websocket.send_json({"type": "error", "message": "order not found"})
    await websocket.close(code=4404)


GONE: dict[str, Any] = {"type": "gone"}
"""Put on a stream's queue by its reader when the client goes away: the stream ends."""


async def _answer_pings(websocket: WebSocket, queue: asyncio.Queue[dict[str, Any]]) -> None:
    """Answer ``{"type":"ping"}`` with ``{"type":"pong"}``; when the client goes away, tell the stream."""
    try:
        while True:
            try:
                message = await websocket.receive_json()
            except (WebSocketDisconnect, RuntimeError):
                return
            except (ValueError, TypeError, KeyError):  # not JSON, or a binary frame
                await websocket.send_json({"type": "error", "message": "messages must be JSON text"})
                continue
            if isinstance(message, dict) and message.get("type") == "ping":
                await websocket.send_json({"type": "pong", "timestamp": iso_ms(time.time() * 1000)})
    finally:
        queue.put_nowait(GONE)


@serve.deployment(graceful_shutdown_timeout_s=3, health_check_period_s=5)
@serve.ingress(app)
class Ingress:
    def __init__(self, settings: Settings, redis_url: str, database_url: str, hub: Any, venues: dict[VenueName, Any] | None = None) -> None:
        setup_logging(settings.log_level)
        tune_garbage_collection()
        self.settings = settings
        self._redis_url = redis_url
        self._database_url = database_url
        self.subscriptions = ReplicaSubscriptions(hub)
        self.hub = hub
        self.venues = venues or {}
        self._sim_pairs: frozenset[tuple[str, str]] = frozenset()
        self._texts: OrderedDict[tuple[str, int, str, bool], str] = OrderedDict()
        self._lock = asyncio.Lock()
        self._started = False

    async def _ready(self) -> None:
        if self._started:
            return
        async with self._lock:
            if not self._started:
                # min_size=0: no connection is made here, so a database that is down answers 503 per request
                self.pool = await create_pool(self._database_url, min_size=0, max_size=12)
                self.redis = redis_store.connect(self._redis_url)
                self.journal = PostgresJournal(self.pool)
                self.orders = RedisOrders(self.redis, self.settings.redis_prefix)
                self.intake = OrderIntake(self.journal, self.orders)
                self.subscriptions.start()
                self._warming = asyncio.create_task(self._warm_pool())
                self._started = True

    async def _warm_pool(self, connections: int = 4) -> None:
        """Open a few connections in the background: one opened on demand costs its request 10-60 ms.
        A database that is down is not waited for here (requests answer 503 on their own)."""

        async def hold() -> None:
            async with self.pool.acquire():
                await asyncio.sleep(0.05)

        with contextlib.suppress(Exception):
            await asyncio.gather(*(hold() for _ in range(connections)))

    @app.post(
        "/api/orders/execute",
        status_code=202,
        response_model=OrderAccepted,
        responses=_ERRORS,
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OrderRequest"}}}}
        },
        summary="Submit an order; follow it on the WebSocket",
    )
    async def execute(self, request: Request) -> JSONResponse:
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if content_type not in ("application/json", ""):
            return _error(415, "Unsupported media type", "send the order as JSON with Content-Type: application/json")
        key = request.headers.get("idempotency-key")
        if key is not None and not (0 < len(key) <= IDEMPOTENCY_KEY_MAX):
            return _error(400, "Validation failed", f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} characters")
        body = await _read_body(request, self.settings.max_body_bytes)
        if isinstance(body, Rejection):
            return JSONResponse(body.body(), status_code=body.status)
        now_ms = time.time() * 1000.0
        parsed = parse_order(body, now_ms, self._sim_pairs)
        if isinstance(parsed, Rejection) and parsed.error == "Unsupported pair" and self.settings.sim_admin:
            await self._ready()
            with contextlib.suppress(StoreUnavailable):
                self._sim_pairs = await self.orders.sim_pairs()  # a pool listed at runtime, maybe by another replica
            parsed = parse_order(body, now_ms, self._sim_pairs)
        if isinstance(parsed, Rejection):
            return JSONResponse(parsed.body(), status_code=parsed.status)
        await self._ready()
        outcome = await self.intake.submit(parsed, time.time() * 1000.0, key or _implicit_key())
        if isinstance(outcome, Rejection):
            return JSONResponse(outcome.body(), status_code=outcome.status)
        assert isinstance(outcome, Accepted)
        message = "order accepted; follow it at /api/orders/{id}/status".replace("{id}", outcome.order_id)
        if outcome.replayed:
            message = "order already accepted for this Idempotency-Key"
        return JSONResponse({"orderId": outcome.order_id, "status": "pending", "message": message}, status_code=202)

    @app.get("/api/orders/{order_id}", responses={404: {"model": ErrorBody}, 503: {"model": ErrorBody}}, summary="An order's current state")
    async def get_order(self, order_id: str) -> JSONResponse:
        oid = parse_order_id(order_id)
        if oid is None:
            return _error(404, "Not found", "order not found")
        await self._ready()
        order = None
        with contextlib.suppress(StoreUnavailable):
            order = await self.orders.get(oid)
        if order is None:
            try:
                order = await self.journal.get(oid)
            except StoreUnavailable as exc:
                return _error(503, "Service unavailable", str(exc))
        if order is None:
            return _error(404, "Not found", "order not found")
        return JSONResponse(order.to_public())

    @app.delete(
        "/api/orders/{order_id}",
        responses={200: {"description": "Cancelled"}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 503: {"model": ErrorBody}},
        summary="Cancel an order that has not been submitted yet",
    )
    async def cancel_order(self, order_id: str) -> JSONResponse:
        oid = parse_order_id(order_id)
        if oid is None:
            return _error(404, "Not found", "order not found")
        await self._ready()
        try:
            flagged = await self.journal.request_cancel(oid)
            if not flagged:
                order = await self.journal.get(oid)
                if order is None:
                    return _error(404, "Not found", "order not found")
                if is_terminal(order.status):
                    return _error(409, "Conflict", f"order is already {order.status.value}")
                return _error(409, "Conflict", "order was already submitted to a venue; it can no longer be cancelled")
            await self.orders.enqueue(oid, Band.CONTROL, time.time() * 1000)
            deadline = time.monotonic() + CANCEL_WAIT_S
            while time.monotonic() < deadline:
                order = await self.journal.get(oid)
                if order is not None and is_terminal(order.status):
                    return JSONResponse(order.to_public())
                await asyncio.sleep(0.05)
        except StoreUnavailable as exc:
            return _error(503, "Service unavailable", str(exc))
        return JSONResponse({"orderId": oid, "status": "cancelling", "message": "cancellation requested"}, status_code=202)

    @app.get("/api/orders", responses={400: {"model": ErrorBody}, 503: {"model": ErrorBody}}, summary="List orders, newest first")
    async def list_orders(
        self,
        status: str | None = None,
        orderType: str | None = None,
        tokenIn: str | None = None,
        tokenOut: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JSONResponse:
        problems: list[dict[str, Any]] = []
        if status is not None and status not in {s.value for s in OrderStatus}:
            problems.append({"path": ["status"], "message": f"must be one of {', '.join(s.value for s in OrderStatus)}", "code": "enum"})
        if orderType is not None and orderType not in {t.value for t in OrderType}:
            problems.append({"path": ["orderType"], "message": "must be MARKET, LIMIT or SNIPER", "code": "enum"})
        tokens = {}
        for name, raw in (("tokenIn", tokenIn), ("tokenOut", tokenOut)):
            if raw is not None:
                tokens[name] = canonical_token(raw)
                if tokens[name] is None:
                    problems.append({"path": [name], "message": "must be a listed symbol or a mint address", "code": "unknown_token"})
        if not 1 <= limit <= 200:
            problems.append({"path": ["limit"], "message": "must be between 1 and 200", "code": "range"})
        before = decode_cursor(cursor) if cursor else None
        if cursor and before is None:
            problems.append({"path": ["cursor"], "message": "not a cursor this API returned", "code": "invalid_cursor"})
        if problems:
            return _error(400, "Validation failed", "the query is not valid", problems)
        await self._ready()
        try:
            orders = await self.journal.list_orders(
                status=status,
                order_type=orderType,
                token_in=tokens.get("tokenIn"),
                token_out=tokens.get("tokenOut"),
                limit=limit,
                before=before,
            )
        except StoreUnavailable as exc:
            return _error(503, "Service unavailable", str(exc))
        next_cursor = encode_cursor(orders[-1]) if len(orders) == limit else None
        return JSONResponse({"orders": [o.to_public() for o in orders], "nextCursor": next_cursor})

    @app.post("/api/sim/pools", status_code=201, summary="Simulation only: list a new pool on a venue (a token launch)")
    async def sim_list_pool(self, body: SimPool) -> JSONResponse:
        if not self.settings.sim_admin:
            return _error(404, "Not found", "simulation admin routes are disabled (OEE_SIM_ADMIN=false)")
        handle = self.venues.get(body.venue)
        if handle is None:
            return _error(400, "Validation failed", f"unknown venue {body.venue}")
        await self._ready()
        await handle.list_pool.remote(body.base, body.quote, body.reserve_base, body.reserve_quote)
        try:
            await self.orders.add_sim_pair(body.base, body.quote)
        except StoreUnavailable as exc:
            return _error(503, "Service unavailable", str(exc))
        listed_at = time.time() * 1000
        return JSONResponse({"venue": body.venue.value, "pair": f"{body.base}/{body.quote}", "listedAt": listed_at}, status_code=201)

    @app.post("/api/sim/price", summary="Simulation only: move a pool's price by a percentage")
    async def sim_move_price(self, body: SimPriceMove) -> JSONResponse:
        if not self.settings.sim_admin:
            return _error(404, "Not found", "simulation admin routes are disabled (OEE_SIM_ADMIN=false)")
        handle = self.venues.get(body.venue)
        if handle is None:
            return _error(400, "Validation failed", f"unknown venue {body.venue}")
        try:
            spot = await handle.move_price.remote(body.base, body.quote, body.percent)
        except Exception as exc:  # the venue has no such pool
            cause = getattr(exc, "cause", None) or exc
            return _error(400, "Validation failed", f"cannot move {body.base}/{body.quote} on {body.venue.value}: {cause}"[:300])
        return JSONResponse({"venue": body.venue.value, "pair": f"{body.base}/{body.quote}", "spotPrice": spot})

    @app.get("/health", summary="Readiness of Redis, PostgreSQL and Ray")
    async def health(self) -> JSONResponse:
        await self._ready()
        checks: dict[str, str] = {}

        async def check(name: str, probe: Any) -> None:
            try:
                await asyncio.wait_for(probe, 2.0)
                checks[name] = "ok"
            except Exception as exc:  # every failure is reported, none is raised
                checks[name] = f"down: {type(exc).__name__}: {exc}"[:200]

        await asyncio.gather(
            check("redis", self.orders.ping()),
            check("postgres", self.journal.ping()),
            check("ray", self.hub.stats.remote()),
        )
        healthy = all(v == "ok" for v in checks.values())
        body: dict[str, Any] = {"status": "ok" if healthy else "degraded", "timestamp": iso_ms(time.time() * 1000), "checks": checks}
        if not healthy:
            body["failing"] = [k for k, v in checks.items() if v != "ok"]
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.websocket("/api/orders/{order_id}/status")
    async def status_stream(self, websocket: WebSocket, order_id: str) -> None:
        await websocket.accept()
        oid = parse_order_id(order_id)
        if oid is None:
            await _refuse(websocket)
            return
        await self._ready()
        queue, history = await self.subscriptions.open(oid)
        try:
            await self._stream(websocket, oid, queue, history)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            await self.subscriptions.close(oid, queue)

    def _encoded(self, event: dict[str, Any]) -> str:
        """An event as JSON text, encoded once for all the sockets that follow its order."""
        key = (event["orderId"], event["seq"], event["status"], bool(event.get("correction")))
        text = self._texts.get(key)
        if text is None:
            text = json.dumps(event, separators=(",", ":"))
            self._texts[key] = text
            if len(self._texts) > ENCODED_KEEP:
                self._texts.popitem(last=False)
        return text

    async def _persisted(self, order_id: str) -> list[dict[str, Any]]:
        try:
            return [e.to_message() for e in await self.journal.events(order_id)]
        except StoreUnavailable:
            return []

    async def _stream(
        self, websocket: WebSocket, order_id: str, queue: asyncio.Queue[dict[str, Any]], history: list[dict[str, Any]]
    ) -> None:
        if is_whole(history):  # this replica holds the order's whole trail: nothing to read
            known = {e["seq"]: e for e in history}
        else:
            known = {e["seq"]: e for e in await self._persisted(order_id)}
            known.update({e["seq"]: e for e in history})
            if not known:
                await _refuse(websocket)
                return
            self.subscriptions.remember(order_id, list(known.values()))
        await websocket.send_json(
            {"type": "connected", "orderId": order_id, "timestamp": iso_ms(time.time() * 1000), "message": f"following {order_id}"}
        )
        last = 0

        async def deliver(events: list[dict[str, Any]]) -> bool:
            """Send events after ``last`` in seq order; True once the terminal one is sent."""
            nonlocal last
            for event in sorted(events, key=lambda e: e["seq"]):
                if event["seq"] <= last and not event.get("correction"):
                    continue
                await websocket.send_text(self._encoded(event))
                last = event["seq"]
                if event["status"] in TERMINAL:
                    await websocket.close(code=1000)
                    return True
            return False

        if await deliver(list(known.values())):
            return
        # One queue carries the hub's events, the catch-up marker and the reader's "gone": the loop
        # waits on it alone (no asyncio.wait of two futures per event, whose garbage, 2,000 sockets
        # over, fed the replica's full GC collections).
        reader = asyncio.create_task(_answer_pings(websocket, queue))
        try:
            while True:
                try:
                    async with asyncio.timeout(QUIET_CHECK_S):
                        event = await queue.get()
                except TimeoutError:  # quiet: check PostgreSQL
                    if await deliver(await self._persisted(order_id)):
                        return
                    continue
                if event.get("type") == GONE["type"]:
                    return
                if event.get("type") == CATCH_UP["type"]:  # the hub failed or restarted: it may have lost events
                    batch = await self._persisted(order_id)
                else:
                    batch = [event]
                    if event["seq"] > last + 1:  # a gap: fill it from PostgreSQL
                        batch += await self._persisted(order_id)
                if await deliver(batch):
                    return
        finally:
            reader.cancel()


def build_app(settings: Settings, redis_url: str, database_url: str, hub: Any, venues: dict[VenueName, Any] | None = None) -> Any:
    deployment: Any = Ingress
    spread = {"max_replicas_per_node": settings.ingress_max_replicas_per_node} if settings.ingress_max_replicas_per_node else {}
    return deployment.options(
        num_replicas=settings.ingress_replicas,
        max_ongoing_requests=settings.max_ongoing_requests,
        ray_actor_options={"num_cpus": 0},
        logging_config={"enable_access_log": settings.access_log},
        **spread,
    ).bind(settings, redis_url, database_url, hub, venues)


def build_from_env(args: dict[str, Any]) -> Any:
    """Application builder for ``serve deploy deploy/serve_config.yaml`` (a cluster).

    Settings come from this task's environment (``runtime_env.env_vars``); Redis and PostgreSQL
    must be set and reachable from every node. The engine's actors are owned by a detached
    :class:`actors.supervisor.EngineSupervisor` (created once per cluster, reused after).
    """
    import ray

    from actors.bootstrap import NAMESPACE
    from actors.placement import singleton_options
    from actors.supervisor import SUPERVISOR, EngineSupervisor
    from engine.adapters.postgres import ensure_database, migrate

    settings = Settings()  # this task's env, not the cached get_settings()
    if not settings.redis_url or not settings.database_url:
        raise ValueError("on a cluster, set OEE_REDIS_URL and OEE_DATABASE_URL to servers every node can reach")
    asyncio.run(ensure_database(settings.database_url))
    asyncio.run(_migrate(settings.database_url, migrate))
    supervisor_class: Any = ray.remote(EngineSupervisor)
    supervisor = supervisor_class.options(
        name=SUPERVISOR,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_concurrency=4,
        **singleton_options(),
    ).remote(settings)
    hub, venues = ray.get([supervisor.hub.remote(), supervisor.venues.remote()])
    return build_app(settings, settings.redis_url, settings.database_url, hub, venues)


def main() -> int:
    """Run the engine in the foreground until SIGINT or SIGTERM."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Serve's proxy (uvicorn + websockets) hangs on a WebSocket request line over 8 KiB instead of
    # refusing it; a larger limit lets the handler refuse long ids cleanly (4404).
    os.environ.setdefault("WEBSOCKETS_MAX_LINE_LENGTH", "65536")
    settings = get_settings()
    haproxy_dir = _haproxy_environment(settings) if settings.ingress_mode == "haproxy" else None
    # Ray's own metrics: every worker records them and the dashboard agent exports them, 4-10 % of a
    # core under intake load here (under 1 % without). Off unless asked for; a cluster keeps its own setting.
    if not settings.ray_address:
        os.environ.setdefault("RAY_enable_metrics_collection", "1" if settings.ray_metrics else "0")
    setup_logging(settings.log_level)
    import ray

    from actors.bootstrap import NAMESPACE, start_actors, stop_actors
    from engine.adapters.postgres import migrate
    from engine.embedded import resolve_dependencies

    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    deps = resolve_dependencies(settings)
    actors = None
    node_id: str | None = None
    ray_gone = False
    try:
        asyncio.run(_migrate(deps.database_url, migrate))
        pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        ray.init(
            address=settings.ray_address,
            num_cpus=None if settings.ray_address else (settings.ray_num_cpus or os.cpu_count()),
            include_dashboard=False,
            _temp_dir=str(settings.ray_temp_dir) if settings.ray_temp_dir and not settings.ray_address else None,
            namespace=NAMESPACE,
            runtime_env={
                "env_vars": {
                    "PYTHONPATH": pythonpath,
                    "RAY_AUTH_MODE": "disabled",
                    "WEBSOCKETS_MAX_LINE_LENGTH": os.environ["WEBSOCKETS_MAX_LINE_LENGTH"],
                }
            },
            logging_level=logging.WARNING,
        )
        alive = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
        if settings.ray_address and len(alive) > 1 and _local_only(deps):
            raise SystemExit(
                "this Ray cluster has several nodes, but Redis/PostgreSQL are embedded or on 127.0.0.1: actors on other "
                "nodes could not reach them. Set OEE_REDIS_URL and OEE_DATABASE_URL to addresses every node can reach."
            )
        # Ray's core worker installs its own SIGTERM handler (which aborts): take the signals back.
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        if stop.is_set():
            return 0
        node_id = ray.get_runtime_context().get_node_id()
        actors = start_actors(settings, deps.redis_url, deps.database_url)
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(
            build_app(settings, deps.redis_url, deps.database_url, actors.hub, actors.venues), name="oee", route_prefix="/", blocking=False
        )
        log.info("engine ready", extra={"url": f"http://{settings.host}:{settings.port}", "embedded": deps.embedded})
        print(f"engine ready on http://{settings.host}:{settings.port}", flush=True)
        while not stop.wait(2.0):
            _supervise(actors)
    finally:
        # When the whole process group got the signal (kill -- -pgid, systemd's control-group stop),
        # the Ray this process started is already gone: Serve's shutdown would wait 30 s for a dead
        # controller and stopping the actors 10 s more for nothing (each engine stop took ~35 s).
        ray_gone = node_id is not None and not settings.ray_address and not _ray_answers()
        if ray_gone:
            log.warning("Ray's daemons exited with the engine's process group; skipping Serve's and the actors' shutdown")
        else:
            with contextlib.suppress(Exception):
                serve.shutdown()  # type: ignore[no-untyped-call]
        # HAProxy next, before any other Ray call: with Ray's daemons gone the next call into Ray
        # can end this process, which left HAProxy listening on OEE_PORT (seen once).
        if settings.ingress_mode == "haproxy" and node_id and not settings.ray_address:
            _stop_haproxy(node_id)
        if haproxy_dir is not None:
            shutil.rmtree(haproxy_dir, ignore_errors=True)
        if ray_gone:
            _kill_local_ray()
        else:
            if actors is not None:
                stop_actors(actors)
            with contextlib.suppress(Exception):
                ray.shutdown()
        deps.stop()
        log.info("engine stopped")
    if ray_gone:
        # Everything is stopped; Ray's exit hooks would only wait ~6 s more on a cluster that is gone.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _haproxy_environment(settings: Settings) -> str:
    """Turn on Serve's HAProxy ingress for the Ray this process starts (its raylet passes the
    environment on to the Serve controller), with files and ports of this engine's own.

    Serve's defaults put HAProxy's config, admin socket and server state under one fixed
    ``/tmp/haproxy-serve`` and its metrics/stats listeners on fixed ports (9101, 8404): two
    engines on one machine then rewrite each other's config and one's requests reach the
    other's replicas. Returns the directory to remove at exit.
    """
    from engine.embedded import free_port

    os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    # Serve's throughput profile: handlers run on the replica's own event loop (no thread hop per
    # request), buffered request logs, GC frozen after start-up. Measured here: the no-op ceiling
    # 2,600 -> 4,200 req/s and durable intake at c=50 1,450 -> 1,690 req/s.
    os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    # Serve adds a 56-character node id below this directory, and a unix socket's path must stay
    # under 107 bytes: a short directory in /tmp (left behind only by a kill -9).
    chosen = settings.haproxy_dir
    if chosen is not None:
        chosen.mkdir(parents=True, exist_ok=True)
        directory = str(chosen)
    else:
        directory = tempfile.mkdtemp(prefix="oee-haproxy-", dir="/tmp")
    os.environ.setdefault("RAY_SERVE_HAPROXY_CONFIG_FILE_LOC", f"{directory}/haproxy.cfg")
    os.environ.setdefault("RAY_SERVE_HAPROXY_SOCKET_PATH", f"{directory}/admin.sock")
    os.environ.setdefault("RAY_SERVE_HAPROXY_SERVER_STATE_BASE", directory)
    os.environ.setdefault("RAY_SERVE_HAPROXY_SERVER_STATE_FILE", f"{directory}/server-state")
    os.environ.setdefault("RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH", f"{directory}/metrics.sock")
    os.environ.setdefault("RAY_SERVE_HAPROXY_METRICS_PORT", str(free_port()))
    os.environ.setdefault("RAY_SERVE_HAPROXY_STATS_PORT", str(free_port()))
    # HAProxy's backup server is a fallback proxy actor on a fixed port (8500; gRPC 9500): with two
    # engines on one machine only the first binds it, and the other's HAProxy sent its requests to the
    # first engine whenever its own replica was marked down (orders accepted into the wrong database).
    os.environ.setdefault("RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", str(free_port()))
    os.environ.setdefault("RAY_SERVE_FALLBACK_PROXY_GRPC_PORT", str(free_port()))
    # Per-request metrics: HAProxy sends a syslog line per request to its manager actor, which parses
    # it with regular expressions: 7-17 % of a core at 1,000-3,000 req/s here. Off unless asked for.
    os.environ.setdefault("RAY_SERVE_HAPROXY_METRICS_ENABLED", "1" if settings.request_metrics else "0")
    # A stopping ingress replica keeps accepting for this long so load balancers can take it out of
    # rotation. Serve's default, 30 s, suits a balancer that polls health; HAProxy here is reconfigured
    # by Serve itself and retries a refused connection on another replica, so 2 s is plenty. With 30 s
    # every engine stop (Ctrl-C, a test, a rolling restart) waited out the whole period: ~35 s -> ~6 s.
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", str(settings.ingress_drain_s))
    return directory


def _ray_answers(timeout_s: float = 2.0) -> bool:
    """True if the cluster's GCS answers. Signalled with the engine's whole process group, the GCS
    this process started stops at once while its process lingers, so only asking tells."""
    from ray._private import worker  # the GCS client Serve's controller uses; no public call has a timeout

    connected: Any = worker.global_worker  # its gcs_client is set on ray.init (untyped)
    try:
        connected.gcs_client.get_all_node_info(timeout=timeout_s)
    except Exception:
        return False
    return True


def _kill_local_ray() -> None:
    """SIGKILL what is left of the Ray this process started (its daemons are stopping anyway, and
    ``ray.shutdown`` waited ~8 s for them). Its workers exit with their raylet."""
    import psutil
    import ray

    ray_dir = os.path.dirname(ray.__file__) + os.sep
    doomed = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.name() in ("gcs_server", "raylet") or any(ray_dir in arg for arg in child.cmdline()):
                child.kill()
                doomed.append(child)
    psutil.wait_procs(doomed, timeout=5)


def _stop_haproxy(node_id: str) -> None:
    """Serve's HAProxy binary outlives ``ray.shutdown``; stop the one this engine's node started."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if "haproxy" in cmdline and node_id in cmdline:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
                proc.wait(5)


def _local_only(deps: Any) -> bool:
    """True if a store is embedded or on the loopback (unreachable from another node)."""
    urls = (deps.redis_url, deps.database_url)
    return bool(deps.embedded) or any(h in u for u in urls for h in ("127.0.0.1", "localhost", "[::1]", "host=/"))


def _supervise(actors: Any) -> None:
    """Restart the dispatcher's loops if its actor was restarted (Ray re-runs only its constructor)."""
    import ray

    try:
        if ray.get(actors.dispatcher.ensure_started.remote(), timeout=10):
            log.warning("dispatcher was restarted; its loops are running again")
        if ray.get(actors.watcher.ensure_started.remote(), timeout=10):
            log.warning("price watcher was restarted; waiting orders reloaded from postgres")
    except Exception as exc:  # the next round tries again
        log.warning("dispatcher supervision failed", extra={"error": f"{type(exc).__name__}: {exc}"})


async def _migrate(database_url: str, migrate: Any) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        await migrate(pool)
    finally:
        await pool.close()


if __name__ == "__main__":
    # Run main() from the importable module, not __main__, so Ray pickles the deployment by reference.
    import serve_app

    sys.exit(serve_app.main())
