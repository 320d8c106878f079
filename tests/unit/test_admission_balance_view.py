"""The replica's wallet-balance view for the funds check at intake: the chain is asked only when the view
cannot vouch for the order, and a refusal is always the chain's current answer."""

from __future__ import annotations

import asyncio

import pytest

from engine.balance_view import BalanceView
from engine.clock import ManualClock


class Chain:
    def __init__(self, held: int) -> None:
        self.held = held
        self.reads = 0
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def read(self, account: str, token: str) -> int:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("chain down")
        return self.held


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_orders_the_view_covers_pass_without_asking_the_chain() -> None:
    chain, clock = Chain(100), ManualClock()
    view = BalanceView(chain.read, clock, refresh_s=0.25, max_age_s=1.0)
    assert await view.reserve("a", "SOL", 30) is None
    assert await view.reserve("a", "SOL", 30) is None
    assert await view.reserve("a", "SOL", 40) is None
    assert chain.reads == 1


async def test_an_order_beyond_what_the_view_has_left_asks_the_chain_and_is_refused_on_its_answer() -> None:
    chain, clock = Chain(100), ManualClock()
    view = BalanceView(chain.read, clock)
    assert await view.reserve("a", "SOL", 60) is None
    assert await view.reserve("a", "SOL", 101) == 100  # more than the wallet holds: the chain's figure
    assert chain.reads == 2


async def test_the_view_never_refuses_what_the_chain_would_pay() -> None:
    chain, clock = Chain(100), ManualClock()
    view = BalanceView(chain.read, clock)
    assert await view.reserve("a", "SOL", 80) is None
    chain.held = 500  # the wallet received funds since
    assert await view.reserve("a", "SOL", 80) is None  # the view has 20 left: the chain is asked, and pays
    assert chain.reads == 2
    assert await view.reserve("a", "SOL", 300) is None and chain.reads == 2


async def test_an_old_view_is_not_trusted() -> None:
    chain, clock = Chain(100), ManualClock()
    view = BalanceView(chain.read, clock, refresh_s=0.25, max_age_s=1.0)
    assert await view.reserve("a", "SOL", 10) is None
    chain.held = 5  # spent elsewhere
    clock.advance(1.5)
    assert await view.reserve("a", "SOL", 10) == 5
    assert chain.reads == 2


async def test_a_view_past_its_refresh_age_is_read_again_in_the_background() -> None:
    chain, clock = Chain(100), ManualClock()
    view = BalanceView(chain.read, clock, refresh_s=0.25, max_age_s=1.0)
    assert await view.reserve("a", "SOL", 10) is None
    clock.advance(0.3)
    chain.held, chain.gate = 40, asyncio.Event()
    assert await view.reserve("a", "SOL", 10) is None  # answered from the view; a read starts behind it
    await settle()
    assert chain.reads == 2
    assert await view.reserve("a", "SOL", 5) is None  # admitted while the read is under way: counts after it
    chain.gate.set()
    await settle()
    assert await view.reserve("a", "SOL", 30) is None  # 40 held, 5 admitted since the read: 35 left
    assert chain.reads == 2
    assert await view.reserve("a", "SOL", 10) is None  # 5 left in the view: the chain is asked, and pays
    assert chain.reads == 3
    assert await view.reserve("a", "SOL", 41) == 40


async def test_accounts_and_tokens_are_apart() -> None:
    chain, clock = Chain(100), ManualClock()
    view = BalanceView(chain.read, clock)
    assert await view.reserve("a", "SOL", 100) is None
    assert await view.reserve("b", "SOL", 100) is None
    assert await view.reserve("a", "USDC", 100) is None
    assert chain.reads == 3


async def test_a_chain_that_does_not_answer_is_an_error_not_a_pass() -> None:
    chain, clock = Chain(100), ManualClock()
    view = BalanceView(chain.read, clock, refresh_s=0.25, max_age_s=1.0)
    chain.fail = True
    with pytest.raises(ConnectionError):
        await view.reserve("a", "SOL", 1)
    chain.fail = False
    assert await view.reserve("a", "SOL", 1) is None
    chain.fail = True
    clock.advance(0.5)
    assert await view.reserve("a", "SOL", 1) is None  # still fresh enough; the background read fails
    await settle()
    clock.advance(0.6)
    with pytest.raises(ConnectionError):  # now too old, and the chain still does not answer
        await view.reserve("a", "SOL", 1)
    view.close()
