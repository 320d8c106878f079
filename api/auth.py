"""Presenting a key: one dependency for every route (``Authorization: Bearer <key>``), scopes per route,
the WebSocket handshake (the header, or ``?token=`` since browsers cannot set headers on a WebSocket),
its Origin check, and the CORS allow-list.

401 ``{"error":"Unauthorized",...}`` with ``WWW-Authenticate: Bearer`` for a missing or unknown key; 403
``{"error":"Forbidden",...}`` for a key without the route's scope. Health and the docs need no key.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope
from starlette.websockets import WebSocket

from api.deps import edge
from api.errors import EdgeError
from api.guard import AuthFailed
from engine.accounts import Principal, Scope

REALM = 'Bearer realm="oee"'

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key: `Authorization: Bearer oee_<keyId>_<secret>` (or the OEE_ADMIN_KEY). Not needed in open local mode.",
)


def unauthorized(message: str, presented: bool = False) -> EdgeError:
    challenge = f'{REALM}, error="invalid_token"' if presented else REALM
    return EdgeError(401, "Unauthorized", message, headers={"WWW-Authenticate": challenge})


def forbidden(message: str) -> EdgeError:
    return EdgeError(403, "Forbidden", message)


async def authenticate(token: str | None) -> Principal:
    here = await edge().ready()
    try:
        return await here.guard.authenticate(token)
    except AuthFailed as exc:
        raise unauthorized(exc.message, exc.presented) from None


async def caller(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)], connection: HTTPConnection) -> Principal:
    """Who is calling (a header that is not a Bearer key counts as none)."""
    if credentials is None and "authorization" in connection.headers:
        raise unauthorized("send the key as Authorization: Bearer <key>", presented=True)
    return await authenticate(credentials.credentials if credentials is not None else None)


async def optional_caller(connection: HTTPConnection) -> Principal | None:
    """The caller if it presents a valid key (or in open local mode), else None: for routes anyone may call."""
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    try:
        return await authenticate(token.strip() if scheme.lower() == "bearer" and token.strip() else None)
    except EdgeError:
        return None


def permitted(who: Principal, scope: Scope) -> Principal:
    """``who`` if its key has ``scope``; else 403."""
    if not who.may(scope):
        raise forbidden(f"this key lacks the {scope.value} scope")
    return who


async def caller_with(request: Request, scope: Scope) -> Principal:
    """What :data:`Trader` and its kind resolve to, outside FastAPI's dependency solving."""
    return permitted(await caller(await bearer(request), request), scope)


def require(scope: Scope) -> Any:
    async def dependency(who: Annotated[Principal, Depends(caller)]) -> Principal:
        return permitted(who, scope)

    return dependency


Reader = Annotated[Principal, Depends(require(Scope.READ))]
"""A caller that may read orders (GET, list, streams)."""
Trader = Annotated[Principal, Depends(require(Scope.TRADE))]
"""A caller that may submit and cancel orders."""
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]
"""A caller that may manage keys, limits and the trading state, and see every account's orders."""
Anyone = Annotated[Principal | None, Depends(optional_caller)]


# --------------------------------------------------------------------------- WebSocket handshake


def ws_token(websocket: WebSocket) -> str | None:
    """The key of a WebSocket handshake: ``Authorization: Bearer``, else ``?token=``."""
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return websocket.query_params.get("token") or None


def origin_allowed(websocket: WebSocket, allowed: list[str]) -> bool:
    """A browser's handshake (it sends Origin) must come from an allowed origin or from this host itself;
    a client that sends no Origin is not a browser page and is judged by its key alone."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    origin = origin.rstrip("/")
    if origin in allowed:
        return True
    return urlsplit(origin).netloc.lower() == websocket.headers.get("host", "").lower()


# --------------------------------------------------------------------------- CORS


class LazyCORS:
    """CORS with the replica's allow-list (``OEE_CORS_ORIGINS``), built on the first request: the app is
    created at import, before the settings reach the replica. An empty list adds no CORS headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._cors: ASGIApp | None = None

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._cors is None:
            try:
                origins = edge().settings.cors_origins
            except RuntimeError:  # no edge installed (a test of the bare app)
                origins = []
            if not origins:
                self._cors = self.app
            else:
                from starlette.middleware.cors import CORSMiddleware

                self._cors = CORSMiddleware(
                    self.app,
                    allow_origins=origins,
                    allow_methods=["GET", "POST", "PUT", "DELETE"],
                    allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
                    expose_headers=["Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy"],
                    max_age=600,
                )
        await self._cors(scope, receive, send)
