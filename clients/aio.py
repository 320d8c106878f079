"""The asyncio client: every route of the engine, and streams that reconnect and resume on their own."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from clients.errors import ApiError, ConnectionFailed, error_for
from clients.models import ActiveOrder, OrderAccepted, OrderPage, StatusUpdate, StreamEvent, as_update

RECONNECT_ATTEMPTS = 8
"""A broken stream is opened again this many times in a row (backing off up to 5 s) before giving up."""


class AsyncClient:
    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.ws_url = "ws" + self.url[len("http") :] if self.url.startswith("http") else self.url
        self.api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout_s, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ requests

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"{method} {self.url}{path}: {type(exc).__name__}: {exc}") from exc
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {"error": "HTTP error", "message": response.text[:200]}
        if response.status_code >= 400:
            raise error_for(response.status_code, body if isinstance(body, dict) else {"error": str(body)}, dict(response.headers))
        return body

    async def submit(
        self,
        token_in: str,
        token_out: str,
        amount: float,
        order_type: str = "MARKET",
        *,
        slippage_bps: int | None = None,
        limit_price: float | None = None,
        max_price: float | None = None,
        expires_at: int | None = None,
        idempotency_key: str | None = None,
    ) -> OrderAccepted:
        body: dict[str, Any] = {"tokenIn": token_in, "tokenOut": token_out, "amount": amount, "orderType": order_type}
        for key, value in (("slippageBps", slippage_bps), ("limitPrice", limit_price), ("maxPrice", max_price), ("expiresAt", expires_at)):
            if value is not None:
                body[key] = value
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return OrderAccepted.model_validate(await self._request("POST", "/api/orders/execute", json=body, headers=headers))

    async def get(self, order_id: str) -> ActiveOrder:
        return ActiveOrder.model_validate(await self._request("GET", f"/api/orders/{order_id}"))

    async def list_orders(
        self,
        *,
        status: str | None = None,
        order_type: str | None = None,
        token_in: str | None = None,
        token_out: str | None = None,
        account: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> OrderPage:
        params = {
            "status": status,
            "orderType": order_type,
            "tokenIn": token_in,
            "tokenOut": token_out,
            "account": account,
            "cursor": cursor,
        }
        query = {k: v for k, v in params.items() if v is not None} | {"limit": limit}
        return OrderPage.model_validate(await self._request("GET", "/api/orders", params=query))

    async def cancel(self, order_id: str) -> dict[str, Any]:
        """The order once cancelled, or ``{"status": "cancelling", ...}`` if it has not closed yet."""
        answer: dict[str, Any] = await self._request("DELETE", f"/api/orders/{order_id}")
        return answer

    async def health(self) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = await self._request("GET", "/health")
        except ApiError as exc:  # 503 still has the report
            return exc.body
        return answer

    async def create_key(self, account: str, scopes: list[str]) -> dict[str, Any]:
        answer: dict[str, Any] = await self._request("POST", "/api/keys", json={"account": account, "scopes": scopes})
        return answer

    async def list_keys(self) -> list[dict[str, Any]]:
        answer = await self._request("GET", "/api/keys")
        keys: list[dict[str, Any]] = answer.get("keys", answer) if isinstance(answer, dict) else answer
        return keys

    async def revoke_key(self, key_id: str) -> None:
        await self._request("DELETE", f"/api/keys/{key_id}")

    async def trading_state(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._request("GET", "/api/admin/trading-state")
        return answer

    async def set_trading_state(self, state: str, reason: str, pair: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"state": state, "reason": reason} | ({"pair": pair} if pair else {})
        answer: dict[str, Any] = await self._request("PUT", "/api/admin/trading-state", json=body)
        return answer

    async def wallet(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._request("GET", "/api/wallet")
        return answer

    async def transaction(self, signature: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._request("GET", f"/api/chain/tx/{signature}")
        return answer

    async def order_transactions(self, order_id: str) -> dict[str, Any]:
        """Every transaction on the chain that settles the order (at most one landed)."""
        answer: dict[str, Any] = await self._request("GET", f"/api/chain/orders/{order_id}")
        return answer

    # ------------------------------------------------------------------ streams

    def _ws_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    async def _messages(self, path: str) -> AsyncIterator[dict[str, Any]]:
        """The JSON messages of one WebSocket connection (raises on a refusal; ends when it closes)."""
        try:
            async with websockets.connect(f"{self.ws_url}{path}", additional_headers=self._ws_headers(), max_size=2**22) as ws:
                try:
                    async for raw in ws:
                        message = json.loads(raw)
                        if isinstance(message, dict):
                            yield message
                except ConnectionClosed as exc:
                    if exc.rcvd is not None and exc.rcvd.code in (4401, 4403, 4404, 4400):
                        raise _closed_error(exc.rcvd.code, exc.rcvd.reason) from exc
                    raise
                if ws.close_code in (4401, 4403, 4404, 4400):
                    raise _closed_error(ws.close_code, ws.close_reason or "")
        except InvalidStatus as exc:
            status = exc.response.status_code
            try:
                body = json.loads(exc.response.body or b"{}")
            except ValueError:
                body = {}
            raise error_for(status, body if isinstance(body, dict) else {}, dict(exc.response.headers)) from exc

    async def follow(self, order_id: str, *, reconnect: bool = True) -> AsyncIterator[StatusUpdate]:
        """The order's status updates, each once and in order, until the terminal one. A broken
        connection is opened again (the stream replays history: what was seen is skipped by seq)."""
        last = 0
        failures = 0
        while True:
            try:
                async for message in self._messages(f"/api/orders/{order_id}/status"):
                    failures = 0
                    if message.get("type") == "error":
                        raise error_for(404, {"error": "Not found", "message": message.get("message", "")})
                    update = as_update(message)
                    if update is None or (update.seq <= last and not update.correction):
                        continue
                    last = update.seq
                    yield update
                    if update.terminal:
                        return
            except (TimeoutError, ConnectionClosed, OSError, WebSocketException) as exc:
                failures += 1
                if not reconnect or failures > RECONNECT_ATTEMPTS:
                    raise ConnectionFailed(f"stream of {order_id} broke: {type(exc).__name__}: {exc}") from exc
                await asyncio.sleep(min(5.0, 0.25 * 2**failures))
                continue
            if not reconnect:
                return
            failures += 1  # closed before the terminal event: open it again
            if failures > RECONNECT_ATTEMPTS:
                raise ConnectionFailed(f"stream of {order_id} closed before its terminal event")
            await asyncio.sleep(min(5.0, 0.25 * 2**failures))

    async def stream(
        self,
        since: int | None = None,
        *,
        statuses: list[str] | None = None,
        order_types: list[str] | None = None,
        reconnect: bool = True,
    ) -> AsyncIterator[StreamEvent]:
        """Every event of your orders from the account-wide stream, resuming after the last eventId
        seen when the connection breaks: nothing missed, nothing repeated. Runs until cancelled."""
        last = since
        failures = 0
        while True:
            query = {"since": str(last) if last is not None else None, "status": ",".join(statuses or []) or None}
            query["orderType"] = ",".join(order_types or []) or None
            path = "/api/stream" + ("?" + "&".join(f"{k}={v}" for k, v in query.items() if v) if any(query.values()) else "")
            try:
                async for message in self._messages(path):
                    failures = 0
                    if message.get("type") == "connected" and last is None:
                        last = int(message.get("eventId", 0))
                    if message.get("type") == "error":
                        raise error_for(400, {"error": "Bad request", "message": message.get("message", "")})
                    if message.get("type") != "event":
                        continue
                    event = StreamEvent.model_validate(message)
                    if last is not None and event.event_id <= last:
                        continue
                    last = event.event_id
                    yield event
            except (TimeoutError, ConnectionClosed, OSError, WebSocketException) as exc:
                if not reconnect:
                    raise ConnectionFailed(f"account stream broke: {type(exc).__name__}: {exc}") from exc
            if not reconnect:
                return
            failures += 1
            if failures > RECONNECT_ATTEMPTS:
                raise ConnectionFailed("the account stream keeps breaking")
            await asyncio.sleep(min(5.0, 0.25 * 2**failures))

    async def wait(self, order_id: str, timeout_s: float = 120.0) -> ActiveOrder:
        """Follow the order to its end and return its final state."""
        deadline = time.monotonic() + timeout_s
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            async for _ in self.follow(order_id):
                pass
        return await self.get(order_id)


def _closed_error(code: int, reason: str) -> ApiError:
    status = {4400: 400, 4401: 401, 4403: 403, 4404: 404}.get(code, 400)
    return error_for(
        status, {"error": {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found"}[status], "message": reason}
    )
