"""Coalescer: calls made while a flush runs share the next one; each caller gets its own answer."""

from __future__ import annotations

import asyncio

import pytest

from engine.batching import Coalescer, Pacer
from engine.clock import ManualClock


class Recorder:
    """A flush that records its batches and waits for ``release`` before answering."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def flush(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await self.release.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_calls_made_in_the_same_step_go_together() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.flush)
    assert list(await asyncio.gather(coalescer.submit(2), coalescer.submit(4))) == [20, 40]
    assert recorder.batches == [[2, 4]]


async def test_a_lone_call_goes_out_at_once() -> None:
    recorder = Recorder()
    coalescer = Coalescer(recorder.flush)
    assert await coalescer.submit(2) == 20
    assert recorder.batches == [[2]]


async def test_calls_made_during_a_flush_share_the_next_one() -> None:
    recorder = Recorder()
    recorder.release.clear()
    coalescer = Coalescer(recorder.flush, max_in_flight=1)
    first = asyncio.create_task(coalescer.submit(0))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(coalescer.submit(i)) for i in (2, 4, 6)]
    await asyncio.sleep(0)
    assert recorder.batches == [[0]]  # the others wait for the flush under way
    recorder.release.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [20, 40, 60]
    assert recorder.batches == [[0], [2, 4, 6]]
    assert (coalescer.flushes, coalescer.items) == (2, 4)


async def test_each_caller_gets_its_own_error() -> None:
    coalescer = Coalescer(Recorder().flush)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    assert [str(r) for r in results[1::2]] == ["odd 1", "odd 3"]


async def test_a_failed_flush_fails_every_caller_of_its_batch_only() -> None:
    calls = 0

    async def flaky(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise ConnectionError("down")
        return items

    coalescer: Coalescer[int, int] = Coalescer(flaky, max_in_flight=1)
    first = asyncio.create_task(coalescer.submit(0))
    for _ in range(2):
        await asyncio.sleep(0)  # the first flush is under way with [0]
    results = await asyncio.gather(first, coalescer.submit(1), coalescer.submit(2), return_exceptions=True)
    assert isinstance(results[0], ConnectionError)
    assert list(results[1:]) == [1, 2]


async def test_batches_are_capped_and_flushes_overlap_up_to_the_limit() -> None:
    recorder = Recorder()
    recorder.release.clear()
    coalescer = Coalescer(recorder.flush, max_batch=2, max_in_flight=2)
    tasks = [asyncio.create_task(coalescer.submit(i * 2)) for i in range(7)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert recorder.batches == [[0, 2], [4, 6]]  # two full batches in flight, the rest wait
    recorder.release.set()
    assert await asyncio.gather(*tasks) == [i * 20 for i in range(7)]
    assert all(len(b) <= 2 for b in recorder.batches)
    assert sorted(i for b in recorder.batches for i in b) == [i * 2 for i in range(7)]


async def test_a_caller_that_stops_waiting_does_not_withdraw_its_item() -> None:
    recorder = Recorder()
    recorder.release.clear()
    coalescer = Coalescer(recorder.flush)
    waiting = asyncio.create_task(coalescer.submit(8))
    await asyncio.sleep(0)
    waiting.cancel()
    recorder.release.set()
    await coalescer.drain()
    assert recorder.batches == [[8]]


async def test_a_flush_answering_the_wrong_number_of_results_fails_the_batch() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    coalescer: Coalescer[int, int] = Coalescer(short)
    with pytest.raises(RuntimeError, match="2 results for 3 items"):
        await asyncio.gather(*(coalescer.submit(i) for i in range(3)))


def test_limits_must_be_positive() -> None:
    async def echo(items: list[int]) -> list[int]:
        return items

    with pytest.raises(ValueError):
        Coalescer(echo, max_batch=0)


# --------------------------------------------------------------------------- streaming flushes


async def test_a_streaming_flush_answers_each_caller_as_its_item_is_done() -> None:
    release = {i: asyncio.Event() for i in range(3)}

    async def stream(items: list[int]):
        pending = dict(enumerate(items))
        while pending:
            for index, item in list(pending.items()):
                if release[item].is_set():
                    del pending[index]
                    yield [(index, item * 10)]
            await asyncio.sleep(0)

    coalescer: Coalescer[int, int] = Coalescer(stream=stream, max_in_flight=1)
    calls = [asyncio.create_task(coalescer.submit(i)) for i in range(3)]
    release[1].set()
    assert await calls[1] == 10
    assert not calls[0].done() and not calls[2].done()  # a quick item does not wait for the slow ones
    release[0].set()
    release[2].set()
    assert list(await asyncio.gather(calls[0], calls[2])) == [0, 20]
    assert coalescer.flushes == 1


async def test_a_streaming_flush_that_ends_early_fails_only_the_unanswered() -> None:
    async def stream(items: list[int]):
        yield [(0, "first")]
        raise ConnectionError("venue lost")

    coalescer: Coalescer[int, str] = Coalescer(stream=stream)
    results = await asyncio.gather(coalescer.submit(1), coalescer.submit(2), return_exceptions=True)
    assert results[0] == "first"
    assert isinstance(results[1], ConnectionError)


async def test_a_streaming_flush_that_forgets_an_item_fails_it() -> None:
    async def stream(items: list[int]):
        yield [(1, "second")]

    coalescer: Coalescer[int, str] = Coalescer(stream=stream)
    results = await asyncio.gather(coalescer.submit(1), coalescer.submit(2), return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and results[1] == "second"


def test_a_coalescer_takes_one_flush_kind() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Coalescer()


# --------------------------------------------------------------------------- pacing


async def test_a_pacer_lets_the_first_go_at_once_and_widens_its_window_when_waits_collect_company() -> None:
    clock = ManualClock(start=100.0)
    pacer = Pacer(0.008, clock, start_s=0.002)
    for _ in range(5):  # back to back, each carrying several: each waits its turn, the window doubling up to 8 ms
        await pacer.turn()
        pacer.carried(3)
    assert clock.slept == [pytest.approx(x) for x in (0.002, 0.004, 0.008, 0.008)]
    clock.advance(1.0)  # a quiet spell
    await pacer.turn()
    pacer.carried(3)
    assert len(clock.slept) == 4  # went at once
    assert pacer.current_s == pytest.approx(0.004)  # and, not having waited, narrows the window
    for _ in range(3):
        clock.advance(1.0)
        await pacer.turn()
        pacer.carried(1)
    assert pacer.current_s == pytest.approx(0.002)  # back to where it starts, at rest


async def test_a_pacer_does_not_widen_for_events_that_wait_alone() -> None:
    """An order's own events come a few ms apart: each waits out the window, but alone. That is not
    load, and a window grown on it would hold every second event back longer and longer."""
    clock = ManualClock(start=100.0)
    pacer = Pacer(0.040, clock)
    for _ in range(6):
        await pacer.turn()
        pacer.carried(1)
    assert clock.slept == [pytest.approx(0.005)] * 5
    assert pacer.current_s == pytest.approx(0.005)


async def test_a_pacer_starts_at_5_ms_whatever_its_maximum_or_at_the_maximum_if_smaller() -> None:
    for window_s, first_wait in ((0.040, 0.005), (0.020, 0.005), (0.003, 0.003)):
        clock = ManualClock(start=100.0)
        pacer = Pacer(window_s, clock)
        await pacer.turn()
        await pacer.turn()
        assert clock.slept == [pytest.approx(first_wait)], window_s


async def test_a_pacer_with_no_window_never_waits() -> None:
    clock = ManualClock()
    pacer = Pacer(0.0, clock)
    for _ in range(3):
        await pacer.turn()
    assert clock.slept == []


async def test_calls_made_while_a_paced_flush_waits_its_turn_go_in_it() -> None:
    clock = ManualClock(start=100.0)
    gate = asyncio.Event()

    async def sleep(seconds: float) -> None:  # the window: held open until the test lets it pass
        clock.slept.append(seconds)
        await gate.wait()

    clock.sleep = sleep  # type: ignore[method-assign]
    recorder = Recorder()
    pacer = Pacer(0.020, clock)
    coalescer = Coalescer(recorder.flush, max_in_flight=10, pacer=pacer)
    assert await coalescer.submit(2) == 20  # the first after a quiet spell: at once
    later = [asyncio.create_task(coalescer.submit(i)) for i in (4, 6, 8)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert recorder.batches == [[2]]  # the next flush waits for its turn ...
    gate.set()
    assert await asyncio.gather(*later) == [40, 60, 80]
    assert recorder.batches == [[2], [4, 6, 8]]  # ... and carries everything queued meanwhile
    assert pacer.current_s == pytest.approx(0.010)  # a wait that collected company: the window widens
