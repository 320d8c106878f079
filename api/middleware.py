"""The request context of every HTTP request and WebSocket: its id, and its metrics.

A pure ASGI middleware (no request object, no extra task), outermost, so even an error page carries the
id. The id is the client's ``X-Request-ID`` or a new one; it is echoed on the response (and on a
WebSocket's handshake) and set in :data:`engine.logs.REQUEST_ID`, so every log line written while the
request is handled carries it as ``requestId``. Under Ray Serve, Serve has already given the request
that same id and echoes it on HTTP responses itself: then this middleware does not echo it a second time.
"""

from __future__ import annotations

import inspect
import random
import time
from collections.abc import Callable

from ray.serve.context import _serve_request_context as _SERVE_CONTEXT
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.instruments import HTTP_REQUESTS, HTTP_SECONDS, WEBSOCKETS
from engine.logs import REQUEST_ID

HEADER = b"x-request-id"
MAX_ID = 200
"""Outside Serve, a longer (or unprintable) incoming id is replaced by a new one. Under Serve the id is
Serve's, which is whatever the client sent."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
"""The route label of a request no route matched (a 404): never the raw path, which any client can vary."""


def serve_request_id() -> str | None:
    """The id Ray Serve gave the request being handled (Serve echoes it as ``X-Request-ID``), or None
    outside Serve."""
    context = _SERVE_CONTEXT.get()
    return getattr(context, "request_id", None) or None


def new_request_id() -> str:
    """32 hex digits from the process's PRNG: an id must be unique, not secret (``uuid4`` reads
    ``os.urandom``, which was most of this middleware's cost)."""
    return f"{random.getrandbits(128):032x}"


def _incoming(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            if 0 < len(value) <= MAX_ID and value.isascii():
                text: str = value.decode("ascii")
                if text.isprintable():
                    return text
            return None
    return None


def route_of(scope: Scope) -> str:
    """The matched route's path template (``/api/orders/{order_id}``), or :data:`UNMATCHED`. FastAPI names
    only its API routes in the scope: another matched route (``/docs``, ``/openapi.json``) has a fixed
    path, and a mounted app (the console's files) is labelled by its prefix (``/console/{path}``)."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    endpoint = scope.get("endpoint")
    if endpoint is None:
        return UNMATCHED
    if inspect.isroutine(endpoint):
        return str(scope["path"])
    return f"{scope.get('root_path', '')}/{{path}}"


class RequestContext:
    def __init__(self, app: ASGIApp, upstream_id: Callable[[], str | None] = serve_request_id) -> None:
        self.app = app
        self.upstream_id = upstream_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _request_id(self, scope: Scope) -> tuple[str, bool]:
        """The request's id, and whether this middleware must echo it (Serve echoes its own)."""
        upstream = self.upstream_id()
        request_id = _incoming(scope) or upstream or new_request_id()
        return request_id, request_id != upstream

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id, echo = self._request_id(scope)
        header = (HEADER, request_id.encode("ascii"))
        status = 500  # if the app fails before it answers

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if echo:
                    message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, sending)
        finally:
            REQUEST_ID.reset(token)
            method = scope["method"] if scope["method"] in METHODS else "other"
            route = route_of(scope)
            HTTP_REQUESTS.inc(route, method, str(status))
            HTTP_SECONDS.observe(time.perf_counter() - started, route, method)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id, _ = self._request_id(scope)
        header = (HEADER, request_id.encode("ascii"))

        async def sending(message: Message) -> None:
            if message["type"] == "websocket.accept":  # Serve does not echo on a handshake: always here
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = REQUEST_ID.set(request_id)
        WEBSOCKETS.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            WEBSOCKETS.dec()
            REQUEST_ID.reset(token)
