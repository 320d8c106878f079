"""Coalescer: calls made while a flush runs share the next one; each caller gets its own answer."""

from __future__ import annotations

import asyncio

import pytest

from engine.batching import Coalescer


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
    assert await asyncio.gather(coalescer.submit(2), coalescer.submit(4)) == [20, 40]
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
    assert results[1:] == [1, 2]


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
