"""StreamProbe: stands in for a Serve replica on a chosen node and follows orders the way the edge
streams them (``api.routes.stream.stream_order``, with a recording WebSocket).

It subscribes at the StatusHub through :class:`api.subscriptions.ReplicaSubscriptions`
(one long-poll per replica, across nodes) and merges the hub's events with PostgreSQL's trail,
exactly as a replica does, so a test can show that a replica on any node gets every order's
events, each once, in order, up to the terminal one, and that no stream is left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import ray

from api.routes.stream import EncodedMessages, stream_order
from api.subscriptions import ReplicaSubscriptions
from engine.adapters.postgres import PostgresJournal, create_pool


class RecordingSocket:
    """The part of a Starlette WebSocket a stream uses; the client never sends anything."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.close_code: int | None = None

    async def send_json(self, data: Any, mode: str = "text") -> None:
        self.sent.append(data)

    async def send_text(self, data: str) -> None:
        self.sent.append(json.loads(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.close_code = code

    async def receive_json(self, mode: str = "text") -> Any:
        await asyncio.Event().wait()  # a quiet client: never sends, never leaves
        raise AssertionError("unreachable")


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
        journal = PostgresJournal(pool)
        encoded = EncodedMessages()

        async def one(order_id: str) -> dict[str, Any]:
            socket = RecordingSocket()
            started = time.monotonic()
            queue, history = await subs.open(order_id)
            outcome = "closed"
            try:
                await asyncio.wait_for(stream_order(socket, order_id, queue, history, journal, subs, encoded), timeout_s)
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
