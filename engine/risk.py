"""Pre-trade risk checks: what an order is worth in USD, and whether it breaks an account's limits.

Pure functions over a :class:`MarketView` (the pools' mid prices and depths, gathered by the edge) and
:class:`engine.accounts.AccountLimits`. A check answers with :class:`Denial` objects, never raises: the
edge turns them into one 422 listing every rule the order breaks. An order whose input token cannot
be valued is denied (``max_notional``): a limit that cannot be checked does not pass.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.accounts import AccountLimits

STABLES: Mapping[str, float] = {"USDC": 1.0, "USDT": 1.0}
"""The tokens taken as worth one dollar: every other USD price is a path of pool mids from one of them."""


@dataclass(frozen=True, slots=True)
class PoolMark:
    """One venue's pool for one direction of a pair: its mid (``tokenOut`` per ``tokenIn`` before any
    trade) and its output-side depth (in ``tokenOut``)."""

    venue: str
    token_in: str
    token_out: str
    mid: float
    depth_out: float


class MarketView:
    """USD prices and the deepest pool per direction, from a set of pool marks.

    A token's USD price is found by walking pools outward from the stablecoins, fewest hops first (the
    deepest pool of a pair gives the pair's mid); ``fallback`` prices tokens no pool reaches.
    """

    def __init__(self, marks: Iterable[PoolMark], fallback_usd: Mapping[str, float] | None = None) -> None:
        self._best: dict[tuple[str, str], PoolMark] = {}
        for mark in marks:
            if not (mark.mid > 0 and mark.depth_out > 0):
                continue
            key = (mark.token_in, mark.token_out)
            if key not in self._best or mark.depth_out > self._best[key].depth_out:
                self._best[key] = mark
        self._fallback = dict(fallback_usd or {})
        self._usd = self._walk()

    def __len__(self) -> int:
        return len(self._best)

    def _walk(self) -> dict[str, float]:
        rates: dict[str, list[tuple[str, float]]] = {}
        for (token_in, token_out), mark in self._best.items():
            rates.setdefault(token_in, []).append((token_out, mark.mid))
            if (token_out, token_in) not in self._best:
                rates.setdefault(token_out, []).append((token_in, 1.0 / mark.mid))
        prices = dict(STABLES)
        frontier = deque(STABLES)
        while frontier:
            token = frontier.popleft()
            for neighbour, mid in rates.get(token, ()):
                if neighbour not in prices:
                    prices[neighbour] = prices[token] / mid  # 1 token = mid neighbours
                    frontier.append(neighbour)
        return prices

    def usd(self, token: str) -> float | None:
        """The USD price of one ``token``, or None if no pool (and no fallback) values it."""
        return self._usd.get(token, self._fallback.get(token))

    def best_pool(self, token_in: str, token_out: str) -> PoolMark | None:
        """The deepest pool (by output-side depth) for this direction, if any venue has one."""
        return self._best.get((token_in, token_out))


@dataclass(frozen=True, slots=True)
class Denial:
    """One rule an order breaks: ``code`` is ``max_notional``, ``max_depth_share`` or ``max_open_notional``."""

    code: str
    message: str
    limit: float
    value: float | None = None

    def detail(self) -> dict[str, Any]:
        """The entry of the 422's ``details``."""
        body: dict[str, Any] = {"path": ["amount"], "code": self.code, "message": self.message, "limit": self.limit}
        if self.value is not None:
            body["value"] = self.value
        return body


@dataclass(frozen=True, slots=True)
class Assessment:
    """An order's USD value (None if it cannot be valued) and every per-order rule it breaks."""

    notional_usd: float | None
    denials: tuple[Denial, ...]

    @property
    def passed(self) -> bool:
        return not self.denials


def notional_usd(token_in: str, token_out: str, amount: float, view: MarketView) -> float | None:
    """What ``amount`` of ``token_in`` is worth in USD: by its own price, else by what it buys at the mid."""
    price = view.usd(token_in)
    if price is not None:
        return amount * price
    pool, out_price = view.best_pool(token_in, token_out), view.usd(token_out)
    if pool is not None and out_price is not None:
        return amount * pool.mid * out_price
    return None


def assess(token_in: str, token_out: str, amount: float, view: MarketView, limits: AccountLimits) -> Assessment:
    """The per-order checks: maximum notional and maximum share of the best pool's depth."""
    denials: list[Denial] = []
    value = notional_usd(token_in, token_out, amount, view)
    if value is None:
        denials.append(
            Denial("max_notional", f"cannot value {token_in} in USD: no pool links it to a stablecoin", limits.max_order_notional_usd)
        )
    elif value > limits.max_order_notional_usd:
        denials.append(
            Denial(
                "max_notional",
                f"the order is worth {value:,.2f} USD; the most for one order is {limits.max_order_notional_usd:,.2f} USD",
                limits.max_order_notional_usd,
                round(value, 2),
            )
        )
    pool = view.best_pool(token_in, token_out)
    if pool is not None:
        share = amount * pool.mid / pool.depth_out
        if share > limits.max_depth_share:
            denials.append(
                Denial(
                    "max_depth_share",
                    f"the order would take {share:.2%} of the best pool's {token_out} depth ({pool.venue}); "
                    f"the most is {limits.max_depth_share:.2%}",
                    limits.max_depth_share,
                    round(share, 6),
                )
            )
    return Assessment(value, tuple(denials))


def open_notional_denial(open_usd: float, order_usd: float, limits: AccountLimits) -> Denial | None:
    """The account-wide check: the open orders' USD value with this one must stay within the limit."""
    total = open_usd + order_usd
    if total <= limits.max_open_notional_usd:
        return None
    return Denial(
        "max_open_notional",
        f"the account's open orders are worth {open_usd:,.2f} USD; with this one {total:,.2f} USD, "
        f"over the limit of {limits.max_open_notional_usd:,.2f} USD",
        limits.max_open_notional_usd,
        round(total, 2),
    )
