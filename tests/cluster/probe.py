"""StreamProbe: stands in for a Serve replica on a chosen node and follows orders the way
``serve_app.Ingress`` streams them (its own ``_stream`` code, with a recording WebSocket).

It subscribes at the StatusHub through :class:`actors.subscriptions.ReplicaSubscriptions`
(one long-poll per replica, across nodes) and merges the hub's events with PostgreSQL's trail,
exactly as a replica does, so a test can show that a replica on any node gets every order's
events, each once, in order, up to the terminal one, and that no stream is left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, cast

import ray

from actors.subscriptions import ReplicaSubscriptions
from engine.adapters.postgres import PostgresJournal, create_pool

if TYPE_CHECKING:
    from ray.serve import Deployment

_INGRESS: Any = None


def _ingress_class() -> Any:
    """The user class behind the ``Ingress`` deployment (whose ``_stream`` is the code under test)."""
    global _INGRESS
    if _INGRESS is None:
        import serve_app

        # @serve.deployment made Ingress a Deployment; mypy does not apply class decorators
        _INGRESS = cast("Deployment", serve_app.Ingress).func_or_class
    return _INGRESS


class RecordingSocket:
    """The part of a Starlette WebSocket ``_stream`` uses; the client never sends anything."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.close_code: int | None = None

    async def send_json(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000) -> None:
        self.close_code = code

    async def receive_json(self) -> dict[str, Any]:
        await asyncio.Event().wait()  # a quiet client: never sends, never leaves
        raise AssertionError("unreachable")


class _Edge:
    """Just enough of an Ingress replica for ``_stream``: a journal to catch up from, and the
    replica's subscriptions (which keep each order's trail for its next stream)."""

    def __init__(self, journal: PostgresJournal, subscriptions: ReplicaSubscriptions) -> None:
        self.journal = journal
        self.subscriptions = subscriptions
        cls = _ingress_class()
        self._stream_impl = cls._stream
        self._persisted_impl = cls._persisted
        self._encoded_impl = cls._encoded
        self._texts: OrderedDict[Any, str] = OrderedDict()

    def _encoded(self, event: dict[str, Any]) -> str:
        result: str = self._encoded_impl(self, event)
        return result

    async def _persisted(self, order_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._persisted_impl(self, order_id)
        return result

    async def stream(self, *args: Any) -> None:
        await self._stream_impl(self, *args)


class StreamProbe:
    def __init__(self, hub: Any, database_url: str) -> None:
        self._hub = hub
        self._database_url = database_url

    def node_id(self) -> str:
        return str(ray.get_runtime_context().get_node_id())

    async def follow(self, order_ids: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
        """Open one stream per order, all at once; report what each received and how it ended."""
        pool = await create_pool(self._database_url, min_size=1, max_size=4)
        subs = ReplicaSubscriptions(self._hub, poll_timeout_s=2.0)
        subs.start()
        edge = _Edge(PostgresJournal(pool), subs)

        async def one(order_id: str) -> dict[str, Any]:
            socket = RecordingSocket()
            started = time.monotonic()
            queue, history = await subs.open(order_id)
            outcome = "closed"
            try:
                await asyncio.wait_for(edge.stream(socket, order_id, queue, history), timeout_s)
            except TimeoutError:
                outcome = "hanging"
            finally:
                await subs.close(order_id, queue)
            events = [m for m in socket.sent if "seq" in m]
            return {
                "outcome": outcome,
                "close_code": socket.close_code,
                "seqs": [e["seq"] for e in events],
                "statuses": [e["status"] for e in events],
                "elapsed_s": time.monotonic() - started,
            }

        try:
            results = await asyncio.gather(*(one(o) for o in order_ids))
            return dict(zip(order_ids, results, strict=True))
        finally:
            await subs.stop()
            with contextlib.suppress(Exception):
                await pool.close()
