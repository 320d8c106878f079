"""StatusHub without Ray (it is a plain class): batched publishes and subscriptions behave as single ones."""

from __future__ import annotations

from typing import Any

from actors.status_hub import StatusHub


def event(order_id: str, seq: int, status: str) -> dict[str, Any]:
    return {"type": "status", "orderId": order_id, "seq": seq, "status": status, "timestamp": seq}


async def test_publish_many_reaches_each_orders_subscribers_in_one_poll() -> None:
    hub = StatusHub()
    histories = await hub.subscribe_many("replica-a", ["o1", "o2"])
    assert histories == [[], []]
    await hub.publish_many([event("o1", 2, "routing"), event("o2", 2, "routing"), event("o3", 2, "routing")])
    incarnation, batch = await hub.poll("replica-a", timeout_s=0.1)
    assert incarnation == hub.incarnation
    assert [(e["orderId"], e["seq"]) for e in batch] == [("o1", 2), ("o2", 2)]  # o3 has no subscriber here
    assert hub.published == 3


async def test_subscribe_many_returns_each_orders_history_and_stops_at_terminal() -> None:
    hub = StatusHub()
    await hub.publish_many([event("o1", 2, "routing"), event("o2", 2, "routing"), event("o2", 3, "failed")])
    histories = await hub.subscribe_many("replica-a", ["o1", "o2", "o9"])
    assert [[e["seq"] for e in h] for h in histories] == [[2], [2, 3], []]
    await hub.publish_many([event("o2", 3, "failed")])  # a replayed publish: delivered already, not queued again
    await hub.publish_many([event("o1", 3, "building")])
    _, batch = await hub.poll("replica-a", timeout_s=0.1)
    assert [(e["orderId"], e["seq"]) for e in batch] == [("o1", 3)]


async def test_a_republished_seq_with_another_status_is_a_correction() -> None:
    hub = StatusHub()
    await hub.subscribe_many("replica-a", ["o1"])
    await hub.publish_many([event("o1", 2, "routing"), event("o1", 3, "building")])
    await hub.publish_many([event("o1", 3, "failed")])  # the resumed run's truth at seq 3
    _, batch = await hub.poll("replica-a", timeout_s=0.1)
    assert [(e["seq"], e["status"], e.get("correction", False)) for e in batch] == [
        (2, "routing", False),
        (3, "building", False),
        (3, "failed", True),
    ]


async def test_finished_orders_are_forgotten_oldest_first_after_the_keep_time(monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("actors.status_hub.time.monotonic", lambda: now[0])
    hub = StatusHub(keep_finished_s=60.0)
    await hub.publish_many([event("old", 2, "confirmed")])
    now[0] += 30
    await hub.publish_many([event("young", 2, "failed"), event("open", 2, "routing")])
    now[0] += 31  # old finished 61 s ago, young 31 s ago
    await hub.publish_many([event("open", 3, "building")])
    assert hub.stats()["orders"] == 2  # old's log is gone; young's and the open order's are kept
    assert await hub.subscribe("replica-a", "old") == []
    assert [e["status"] for e in await hub.subscribe("replica-a", "young")] == ["failed"]
    now[0] += 30
    await hub.publish_many([event("open", 4, "submitted")])
    assert hub.stats()["orders"] == 1  # young expired too; an open order is never expired


async def test_events_of_a_replaced_run_are_dropped() -> None:
    hub = StatusHub()
    await hub.subscribe("r1", "o1")
    await hub.publish_runs([(1, event("o1", 2, "routing")), (2, event("o1", 3, "routing"))])  # run 2 claimed the order
    await hub.publish_runs([(1, event("o1", 3, "building")), (1, event("o1", 4, "failed"))])  # run 1, a zombie, late
    await hub.publish_runs([(2, event("o1", 4, "building")), (-1, event("o1", 5, "submitted"))])  # -1: unfenced, kept
    _, events = await hub.poll("r1", timeout_s=0.1)
    assert [(e["seq"], e["status"]) for e in events] == [(2, "routing"), (3, "routing"), (4, "building"), (5, "submitted")]
    assert hub.stats()["stale_dropped"] == 2
