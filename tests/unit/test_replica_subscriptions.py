"""The replica's side of the StatusHub: each order's trail kept while it has sockets here, so the
next socket for it opens with no hub call and no PostgreSQL read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from api.subscriptions import Item, ReplicaSubscriptions
from engine.trail import Signal, is_whole


def event(seq: int, status: str, order_id: str = "o1", **extra: Any) -> dict[str, Any]:
    return {"orderId": order_id, "seq": seq, "status": status, "timestamp": 1000 + seq, **extra}


class _Method:
    def __init__(self, fn: Callable[..., Awaitable[Any]]) -> None:
        self.remote = fn


class FakeHub:
    """A StatusHub as a replica sees it: ``subscribe_many`` answers with the history it holds;
    ``poll`` hands out what a test pushes."""

    def __init__(self, history: dict[str, list[dict[str, Any]]]) -> None:
        self.history = history
        self.subscribe_calls: list[list[str]] = []
        self.unsubscribed: list[str] = []
        self._polls: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        self.subscribe_many = _Method(self._subscribe_many)
        self.poll = _Method(self._poll)
        self.unsubscribe = _Method(self._unsubscribe)

    async def _subscribe_many(self, replica_id: str, order_ids: list[str]) -> list[list[dict[str, Any]]]:
        self.subscribe_calls.append(order_ids)
        return [list(self.history.get(order_id, [])) for order_id in order_ids]

    async def _poll(self, replica_id: str, timeout_s: float) -> tuple[str, list[dict[str, Any]]]:
        return "incarnation-1", await self._polls.get()

    async def _unsubscribe(self, replica_id: str, order_id: str) -> None:
        self.unsubscribed.append(order_id)

    async def push(self, *events: dict[str, Any]) -> None:
        self._polls.put_nowait(list(events))
        for _ in range(5):  # let the replica's poll loop take and dispatch them
            await asyncio.sleep(0)


@pytest.fixture
async def hub_and_subs() -> AsyncIterator[tuple[FakeHub, ReplicaSubscriptions]]:
    # the hub never holds seq 1 (``pending`` is written by the intake, to PostgreSQL only)
    hub = FakeHub({"o1": [event(2, "routing")]})
    subs = ReplicaSubscriptions(hub)
    subs.start()
    yield hub, subs
    await subs.stop()


def drain(queue: asyncio.Queue[Item]) -> list[int]:
    seqs = []
    while not queue.empty():
        item = queue.get_nowait()
        assert isinstance(item, dict), item
        seqs.append(item["seq"])
    return seqs


async def test_the_next_socket_for_an_order_opens_from_the_trail_without_a_hub_call(
    hub_and_subs: tuple[FakeHub, ReplicaSubscriptions],
) -> None:
    hub, subs = hub_and_subs
    first, history = await subs.open("o1")
    assert [e["seq"] for e in history] == [2]
    assert not is_whole(history)  # seq 1 is missing: the first stream reads PostgreSQL ...
    await hub.push(event(3, "building"))  # (an event arriving while it reads)
    subs.remember("o1", [event(1, "pending"), *history])  # ... and hands its merged history back

    second, trail = await subs.open("o1")
    assert hub.subscribe_calls == [["o1"]]  # one hub call for both sockets
    assert subs.opened_from_trail == 1
    assert [e["seq"] for e in trail] == [1, 2, 3]
    assert [e["status"] for e in trail] == ["pending", "routing", "building"]
    await hub.push(event(4, "submitted"))
    assert drain(first) == [3, 4]
    assert drain(second) == [4]  # after the trail it opened with: nothing twice, nothing missed


async def test_a_trail_with_a_gap_is_not_used(hub_and_subs: tuple[FakeHub, ReplicaSubscriptions]) -> None:
    hub, subs = hub_and_subs
    await subs.open("o1")
    await hub.push(event(4, "submitted"))  # seq 3 never reached this replica
    subs.remember("o1", [event(1, "pending"), event(2, "routing")])
    _, history = await subs.open("o1")
    assert len(hub.subscribe_calls) == 2  # the hub again, and the stream will read PostgreSQL
    assert [e["seq"] for e in history] == [2]


async def test_a_correction_replaces_its_seq_and_drops_what_followed(hub_and_subs: tuple[FakeHub, ReplicaSubscriptions]) -> None:
    hub, subs = hub_and_subs
    await subs.open("o1")
    subs.remember("o1", [event(1, "pending"), event(2, "routing")])
    await hub.push(event(3, "building"), event(4, "submitted"))
    await hub.push(event(3, "building", correction=True, note="resumed run"))
    _, trail = await subs.open("o1")
    assert [(e["seq"], e.get("note")) for e in trail] == [(1, None), (2, None), (3, "resumed run")]


async def test_remembered_history_does_not_overwrite_newer_events(hub_and_subs: tuple[FakeHub, ReplicaSubscriptions]) -> None:
    hub, subs = hub_and_subs
    await subs.open("o1")
    await hub.push(event(2, "routing", correction=True, note="live"))
    subs.remember("o1", [event(1, "pending"), event(2, "routing", note="old")])
    _, trail = await subs.open("o1")
    assert trail[1]["note"] == "live"


async def test_a_catch_up_forgets_every_trail(hub_and_subs: tuple[FakeHub, ReplicaSubscriptions]) -> None:
    hub, subs = hub_and_subs
    queue, _ = await subs.open("o1")
    subs.remember("o1", [event(1, "pending"), event(2, "routing")])
    subs._catch_up()  # what a hub outage or restart triggers: events may have been lost
    assert queue.get_nowait() is Signal.CATCH_UP
    await subs.open("o1")
    assert len(hub.subscribe_calls) == 2


async def test_the_trail_goes_with_the_orders_last_socket(hub_and_subs: tuple[FakeHub, ReplicaSubscriptions]) -> None:
    hub, subs = hub_and_subs
    first, _ = await subs.open("o1")
    subs.remember("o1", [event(1, "pending"), event(2, "routing")])
    second, _ = await subs.open("o1")
    await subs.close("o1", first)
    assert hub.unsubscribed == []
    await subs.close("o1", second)
    assert hub.unsubscribed == ["o1"]
    await subs.open("o1")
    assert len(hub.subscribe_calls) == 2  # no trail kept for an order no socket here follows


def test_a_history_is_whole_when_it_holds_every_seq_from_1_to_the_latest() -> None:
    assert is_whole([event(1, "pending"), event(2, "routing")])
    assert is_whole([event(2, "routing"), event(1, "pending")])
    assert not is_whole([])
    assert not is_whole([event(2, "routing"), event(3, "building")])
    assert not is_whole([event(1, "pending"), event(3, "building")])
