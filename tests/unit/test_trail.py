"""The stream trail: merging by seq, corrections, replays, wholeness, and what one stream sends next."""

from __future__ import annotations

from typing import Any

from engine.trail import Delivery, Trail, is_whole


def ev(seq: int, status: str, **extra: Any) -> dict[str, Any]:
    return {"orderId": "o1", "seq": seq, "status": status, **extra}


def seqs(messages: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(m["seq"], m["status"]) for m in messages]


def test_merge_keeps_what_is_known_and_adds_the_rest() -> None:
    trail = Trail([ev(2, "routing", note="live")])
    trail.merge([ev(1, "pending"), ev(2, "routing", note="stored")])
    assert seqs(trail.ordered()) == [(1, "pending"), (2, "routing")]
    assert trail.ordered()[1]["note"] == "live"


def test_a_trail_is_whole_from_seq_one_without_gaps() -> None:
    assert not Trail().is_whole()
    assert not Trail([ev(2, "routing")]).is_whole()
    assert not Trail([ev(1, "pending"), ev(3, "building")]).is_whole()
    assert Trail([ev(1, "pending"), ev(2, "routing")]).is_whole()
    assert is_whole([ev(2, "routing"), ev(1, "pending")])


def test_publish_drops_a_replay_and_marks_a_correction() -> None:
    trail = Trail()
    assert trail.publish(ev(2, "routing")) == ev(2, "routing")
    assert trail.publish(ev(3, "building")) == ev(3, "building")
    assert trail.publish(ev(3, "building")) is None  # the executor's retry of the same event
    corrected = trail.publish(ev(3, "failed"))
    assert corrected == ev(3, "failed", correction=True)
    assert seqs(trail.ordered()) == [(2, "routing"), (3, "failed")]


def test_a_correction_replaces_its_seq_and_drops_what_followed() -> None:
    trail = Trail([ev(1, "pending"), ev(2, "routing"), ev(3, "building"), ev(4, "submitted")])
    trail.apply(ev(3, "routing", correction=True))
    assert seqs(trail.ordered()) == [(1, "pending"), (2, "routing"), (3, "routing")]
    assert trail.latest == ev(3, "routing", correction=True)


def test_a_delivery_sends_each_seq_once_in_order_and_stops_at_the_terminal_one() -> None:
    delivery = Delivery()
    assert seqs(delivery.take([ev(2, "routing"), ev(1, "pending")])) == [(1, "pending"), (2, "routing")]
    assert delivery.take([ev(2, "routing")]) == []
    assert seqs(delivery.take([ev(3, "building"), ev(5, "confirmed"), ev(4, "submitted")])) == [
        (3, "building"),
        (4, "submitted"),
        (5, "confirmed"),
    ]
    assert delivery.done
    assert delivery.take([ev(6, "confirmed")]) == []


def test_a_delivery_resends_a_correction_and_notices_gaps() -> None:
    delivery = Delivery()
    delivery.take([ev(1, "pending"), ev(2, "routing"), ev(3, "building")])
    assert not delivery.has_gap(ev(4, "submitted"))
    assert delivery.has_gap(ev(5, "confirmed"))
    assert seqs(delivery.take([ev(3, "failed", correction=True)])) == [(3, "failed")]
    assert delivery.done
