"""What every WebSocket passes before its stream starts, and what a client may send on it.

The handshake: the Origin check (browsers), the key (``Authorization: Bearer`` or ``?token=``), this
replica's stream cap (``max_ongoing_requests`` less a tenth by default, so open streams never take the
requests HTTP intake needs) and the account's cap across the cluster (``OEE_ACCOUNT_MAX_STREAMS``).
A refused handshake is answered over HTTP where the server supports it (401, 403) and otherwise accepted
and closed at once with the matching code.

Close codes: 4401 no or bad key, 4403 a key without the scope or a foreign Origin, 4429 the account has
too many streams open, 1013 this replica is full (try again), 1008 a message too large or too many
messages. Keep-alive: the server pings every 20 s and drops a peer that does not answer within 20 s
(uvicorn's WebSocket ping, under Serve's HTTP server and HAProxy alike).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import WebSocketDisconnect
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketState

from api.auth import origin_allowed, ws_token
from api.deps import Edge
from api.errors import body
from api.guard import AuthFailed
from engine.accounts import Principal, Scope
from engine.errors import StoreUnavailable
from engine.token_bucket import TokenBucket

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_MANY = 4429
CLOSE_TRY_LATER = 1013
CLOSE_POLICY = 1008


class Refused(Exception):
    def __init__(self, status: int, error: str, message: str, code: int) -> None:
        super().__init__(status, error, message, code)
        self.status = status
        self.error = error
        self.message = message
        self.code = code


async def refuse(websocket: WebSocket, refused: Refused) -> None:
    """Refuse the handshake with an HTTP answer if the server can send one, else accept and close."""
    headers = {"WWW-Authenticate": 'Bearer realm="oee"'} if refused.status == 401 else None
    if refused.status in (401, 403) and "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(body(refused.error, refused.message), refused.status, headers=headers))
        return
    await websocket.accept()
    with contextlib.suppress(Exception):
        await websocket.send_json({"type": "error", "message": refused.message})
        await websocket.close(code=refused.code, reason=refused.message[:120])


async def handshake(websocket: WebSocket, here: Edge, scope: Scope = Scope.READ) -> Principal:
    """The caller of a WebSocket, or :class:`Refused`. Counts nothing."""
    if not origin_allowed(websocket, here.settings.cors_origins):
        raise Refused(403, "Forbidden", "this Origin may not open streams (OEE_CORS_ORIGINS)", CLOSE_FORBIDDEN)
    try:
        who = await here.guard.authenticate(ws_token(websocket))
    except AuthFailed as exc:
        raise Refused(401, "Unauthorized", exc.message, CLOSE_UNAUTHORIZED) from None
    if not who.may(scope):
        raise Refused(403, "Forbidden", f"this key lacks the {scope.value} scope", CLOSE_FORBIDDEN)
    return who


@contextlib.asynccontextmanager
async def admitted(websocket: WebSocket, here: Edge, scope: Scope = Scope.READ) -> AsyncIterator[Principal | None]:
    """Accept a stream that passes the handshake and its caps and yield its caller; refuse it and yield
    None otherwise. The stream is counted (here and for its account) until the block ends."""
    guard = here.guard
    stream_id: str | None = None
    counted = False
    try:
        who = await handshake(websocket, here, scope)
        if len(guard.streams) >= here.settings.stream_cap_per_replica():
            raise Refused(503, "Service unavailable", "this replica has as many streams as it takes; try again", CLOSE_TRY_LATER)
        limits = await guard.limits_for(who.account)
        stream_id = await guard.admission.open_stream(who.account, limits.max_streams)
        if stream_id is None:
            message = f"account {who.account} has {limits.max_streams} streams open; close one first"
            raise Refused(429, "Too many requests", message, CLOSE_TOO_MANY)
        guard.streams[stream_id] = who.account
        counted = True
    except Refused as refused:
        await refuse(websocket, refused)
        yield None
        return
    except StoreUnavailable:
        await refuse(websocket, Refused(503, "Service unavailable", "a store is unavailable; try again", CLOSE_TRY_LATER))
        yield None
        return
    try:
        await websocket.accept()
        yield who
    finally:
        if counted and stream_id is not None:
            guard.streams.pop(stream_id, None)
            with contextlib.suppress(StoreUnavailable):
                await guard.admission.close_stream(who.account, stream_id)


class LimitedSocket:
    """A WebSocket whose incoming messages are held to a size and a rate: a client over either is closed
    with 1008 (its stream then ends as if it had left)."""

    def __init__(self, websocket: WebSocket, max_bytes: int, per_second: float, burst: int) -> None:
        self.websocket = websocket
        self.max_bytes = max_bytes
        self._bucket = TokenBucket(rate_per_s=per_second, capacity=float(burst))

    async def send_json(self, data: Any, mode: str = "text") -> None:
        await self.websocket.send_json(data, mode)

    async def send_text(self, data: str) -> None:
        await self.websocket.send_text(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self.websocket.close(code, reason)

    async def receive_json(self, mode: str = "text") -> Any:
        message = await self.websocket.receive()
        self.websocket._raise_on_disconnect(message)
        text, data = message.get("text"), message.get("bytes")
        raw: str | bytes = text if isinstance(text, str) else (data if isinstance(data, bytes) else b"")
        if len(raw) > self.max_bytes:
            await self._violation(f"messages must be at most {self.max_bytes} bytes")
        if not self._bucket.try_acquire(time.monotonic()):
            await self._violation("too many messages; at most a few per second")
        if isinstance(raw, bytes):
            raise ValueError("binary frame")
        return json.loads(raw)

    async def _violation(self, reason: str) -> None:
        with contextlib.suppress(Exception):
            if self.websocket.application_state is WebSocketState.CONNECTED:
                await self.websocket.send_json({"type": "error", "message": reason})
                await self.websocket.close(code=CLOSE_POLICY, reason=reason)
        raise WebSocketDisconnect(CLOSE_POLICY, reason)


def limited(websocket: WebSocket, here: Edge) -> LimitedSocket:
    settings = here.settings
    return LimitedSocket(websocket, settings.ws_max_message_bytes, settings.ws_messages_per_second, settings.ws_message_burst)
