"""The same client for code without an event loop: a thin facade over :class:`clients.aio.AsyncClient`
running on a loop of its own in a background thread (one implementation of every call)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, TypeVar

from clients.aio import AsyncClient
from clients.models import ActiveOrder, OrderAccepted, OrderPage, StatusUpdate, StreamEvent

T = TypeVar("T")


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout_s: float = 30.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="oee-client", daemon=True)
        self._thread.start()
        self._aio: AsyncClient = self._run(_make(url, api_key, timeout_s))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._aio.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def _run(self, coroutine: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(_await(coroutine), self._loop).result()

    def _iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(iterator.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._run(_close(iterator))

    def submit(self, token_in: str, token_out: str, amount: float, order_type: str = "MARKET", **options: Any) -> OrderAccepted:
        """See :meth:`AsyncClient.submit` (options: slippage_bps, limit_price, max_price, expires_at, idempotency_key)."""
        return self._run(self._aio.submit(token_in, token_out, amount, order_type, **options))

    def get(self, order_id: str) -> ActiveOrder:
        return self._run(self._aio.get(order_id))

    def list_orders(self, **filters: Any) -> OrderPage:
        """See :meth:`AsyncClient.list_orders` (status, order_type, token_in, token_out, account, limit, cursor)."""
        return self._run(self._aio.list_orders(**filters))

    def cancel(self, order_id: str) -> dict[str, Any]:
        return self._run(self._aio.cancel(order_id))

    def health(self) -> dict[str, Any]:
        return self._run(self._aio.health())

    def wait(self, order_id: str, timeout_s: float = 120.0) -> ActiveOrder:
        return self._run(self._aio.wait(order_id, timeout_s))

    def follow(self, order_id: str, *, reconnect: bool = True) -> Iterator[StatusUpdate]:
        return self._iterate(self._aio.follow(order_id, reconnect=reconnect))

    def stream(self, since: int | None = None, **filters: Any) -> Iterator[StreamEvent]:
        """See :meth:`AsyncClient.stream` (statuses, order_types, reconnect)."""
        return self._iterate(self._aio.stream(since, **filters))

    def create_key(self, account: str, scopes: list[str]) -> dict[str, Any]:
        return self._run(self._aio.create_key(account, scopes))

    def list_keys(self) -> list[dict[str, Any]]:
        return self._run(self._aio.list_keys())

    def revoke_key(self, key_id: str) -> None:
        self._run(self._aio.revoke_key(key_id))

    def trading_state(self) -> dict[str, Any]:
        return self._run(self._aio.trading_state())

    def set_trading_state(self, state: str, reason: str, pair: str | None = None) -> dict[str, Any]:
        return self._run(self._aio.set_trading_state(state, reason, pair))

    def wallet(self) -> dict[str, Any]:
        return self._run(self._aio.wallet())

    def transaction(self, signature: str) -> dict[str, Any]:
        return self._run(self._aio.transaction(signature))

    def order_transactions(self, order_id: str) -> dict[str, Any]:
        return self._run(self._aio.order_transactions(order_id))


async def _make(url: str, api_key: str | None, timeout_s: float) -> AsyncClient:
    return AsyncClient(url, api_key, timeout_s)


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _close(iterator: AsyncIterator[Any]) -> None:
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        await closer()
