"""The replica's view of the market for pre-trade risk checks: every pool's mid and depth, asked of the
venue actors at most once a second and shared by every request meanwhile.

Each venue is asked for a tiny quote on every pair the venues trade (one ``read_many`` call per venue):
a quote carries the pool's mid before the trade (``spotPrice``) and its output-side depth
(``liquidity``). A request that finds the view older than a second gets the one it finds and starts a
refresh in the background; only the first requests of a replica wait for one (up to
:data:`FIRST_WAIT_S`). A venue that does not answer keeps its last marks for :data:`MARK_TTL_S`. Before
any venue ever answered, the token list's reference prices value the listed tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from engine.models import DexQuote, VenueName
from engine.risk import MarketView, PoolMark
from engine.tokens import BY_SYMBOL

log = logging.getLogger("api.market")

REFRESH_S = 1.0
FIRST_WAIT_S = 3.0
MARK_TTL_S = 120.0
UNIT = 1e-6
"""The amount quoted: small enough to move no pool, so the quote's spot price is the mid."""

REFERENCE_USD = {symbol: token.reference_usd for symbol, token in BY_SYMBOL.items()}


class MarketMarks:
    def __init__(self, venues: dict[VenueName, Any], pairs: Callable[[], frozenset[tuple[str, str]]]) -> None:
        self._venues = venues
        self._pairs = pairs
        self._marks: dict[tuple[str, str, str], tuple[PoolMark, float]] = {}
        self._view: MarketView | None = None
        self._asked_at = -REFRESH_S
        self._refreshing: asyncio.Task[None] | None = None
        self.refreshes = 0

    async def view(self) -> MarketView:
        """The current view; refreshed in the background once it is a second old."""
        stale = time.monotonic() - self._asked_at >= REFRESH_S
        if stale and (self._refreshing is None or self._refreshing.done()):
            self._asked_at = time.monotonic()
            self._refreshing = asyncio.create_task(self._refresh())
        if self._view is None and self._refreshing is not None:
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(self._refreshing), FIRST_WAIT_S)
        if self._view is None:
            return MarketView([], REFERENCE_USD)  # no venue answered yet: value listed tokens by reference
        return self._view

    async def _refresh(self) -> None:
        pairs = sorted(self._pairs())
        if not pairs:
            return
        requests = [("quote", (token_in, token_out, UNIT)) for token_in, token_out in pairs]
        names = list(self._venues)
        answers = await asyncio.gather(*(self._venues[n].read_many.remote(requests) for n in names), return_exceptions=True)
        now = time.monotonic()
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, BaseException):
                log.warning("risk marks: venue did not answer", extra={"venue": name, "error": type(answer).__name__})
                continue
            for (token_in, token_out), quote in zip(pairs, answer, strict=False):
                if isinstance(quote, DexQuote) and quote.spot_price > 0 and quote.liquidity > 0:
                    mark = PoolMark(name, token_in, token_out, quote.spot_price, quote.liquidity)
                    self._marks[(name, token_in, token_out)] = (mark, now)
        self._marks = {key: (mark, at) for key, (mark, at) in self._marks.items() if now - at < MARK_TTL_S}
        if self._marks:
            self._view = MarketView(mark for mark, _ in self._marks.values())
        self.refreshes += 1
