"""The lease and epoch rules (engine/lease.py), as tables."""

from __future__ import annotations

import pytest

from engine.lease import UNFENCED, Lease, accepts, decide, held_until

A = Lease("engine-a", 3, 100.0)


@pytest.mark.parametrize(
    ("current", "holder", "now", "gone", "expected"),
    [
        (None, "engine-a", 50.0, False, Lease("engine-a", 1, 56.0)),  # free: taken, first token
        (A, "engine-a", 99.0, False, Lease("engine-a", 3, 105.0)),  # own: renewed, same token
        (A, "engine-a", 120.0, False, Lease("engine-a", 3, 126.0)),  # own, even late: renewed
        (A, "engine-b", 99.9, False, None),  # another's live lease: refused
        (A, "engine-b", 100.0, False, Lease("engine-b", 4, 106.0)),  # expired: taken over, token + 1
        (A, "engine-b", 50.0, True, Lease("engine-b", 4, 56.0)),  # its holder's process is gone: taken at once
    ],
)
def test_decide(current: Lease | None, holder: str, now: float, gone: bool, expected: Lease | None) -> None:
    assert decide(current, holder, now, 6.0, holder_gone=gone) == expected


def test_decide_needs_a_positive_ttl() -> None:
    with pytest.raises(ValueError):
        decide(None, "engine-a", 0.0, 0.0)


def test_a_holder_stops_before_another_could_take_over() -> None:
    # asked at 10 s (its clock) for 6 s: the store stamped the grant later, so the lease lasts past
    # 16 s on the store's clock; the holder acts until 16 s less the margin
    assert held_until(10.0, 6.0, 1.5) == 14.5
    assert held_until(10.0, 1.0, 2.0) == 10.0  # a margin over the ttl: never acts


@pytest.mark.parametrize(
    ("stored", "writer", "ok"),
    [(3, 3, True), (3, 4, True), (4, 3, False), (0, 1, True), (7, UNFENCED, True)],
)
def test_accepts_writes_from_the_current_or_a_newer_run(stored: int, writer: int, ok: bool) -> None:
    assert accepts(stored, writer) is ok


def test_the_lease_scope_names_the_redis_server_and_prefix_without_credentials() -> None:
    from engine.settings import Settings

    settings = Settings(redis_url="redis://:s3cret@10.0.0.5:6380/2", redis_prefix="prod:")
    assert settings.lease_scope == "redis=10.0.0.5:6380/2 prefix=prod:"
    assert "s3cret" not in settings.lease_scope
    assert Settings().dispatch_holder != Settings().dispatch_holder  # a new name per start unless set


def test_the_epoch_rides_at_the_front_of_the_hot_copy() -> None:
    from engine.adapters.run_fence import stamped, terminal_list

    assert stamped('{"orderId":"o1"}', 7) == '{"runEpoch":7,"orderId":"o1"}'
    assert stamped('{"orderId":"o1"}', None) == stamped('{"orderId":"o1"}', UNFENCED) == '{"orderId":"o1"}'
    assert terminal_list(["failed", "confirmed"]) == ",confirmed,failed,"
