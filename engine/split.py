"""Splitting one order across two venues when that yields more than either alone.

Each venue's output is a concave function of its input (constant product and
binned pools both give less per unit as the amount grows), so the total output
``f(x) = a(x) + b(A - x)`` is concave in the share ``x`` and a golden-section
search finds its maximum. Pure: it only calls the output functions it is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Output = Callable[[float], float]
"""Output for an input amount; ``-inf`` where the venue cannot fill it."""

_INV_PHI = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True, slots=True)
class Split:
    share_a: float  # fraction of the amount sent to venue a, in [0, 1]
    amount_a: float
    amount_b: float
    out_a: float
    out_b: float

    @property
    def total(self) -> float:
        return self.out_a + self.out_b


def _safe(fn: Output, amount: float) -> float:
    if amount <= 0:
        return 0.0
    try:
        return fn(amount)
    except (ValueError, ArithmeticError):
        return -math.inf


def evaluate(a: Output, b: Output, amount: float, share_a: float) -> Split:
    amount_a = amount * share_a
    amount_b = amount - amount_a
    return Split(share_a, amount_a, amount_b, _safe(a, amount_a), _safe(b, amount_b))


def _all_to_one(a: Output, b: Output, amount: float) -> Split | None:
    """The whole amount to one venue, when the marginal rates show that no split can do better.

    With concave outputs, moving a little of the amount from ``a`` to ``b`` gains ``b``'s first
    rate and loses ``a``'s last one; if the latter is at least the former everywhere along the
    way, sending everything to ``a`` is optimal. Four pool reads instead of the ~60 of a search:
    most orders are small next to the pools, and this is what routes them cheaply.
    """
    step = amount * 1e-6
    for first, second, share in ((a, b, 1.0), (b, a, 0.0)):
        at_end, past_end, tiny = _safe(first, amount), _safe(first, amount + step), _safe(second, step * 1e-3)
        if not all(math.isfinite(v) for v in (at_end, past_end, tiny)) or tiny <= 0:
            continue
        last_rate = (past_end - at_end) / step  # concave: at most the rate at ``amount`` itself
        first_rate = tiny / (step * 1e-3) * (1 + 1e-6)  # at least the rate at 0, up to rounding
        if last_rate >= first_rate:
            return evaluate(a, b, amount, share)
    return None


def best_split(a: Output, b: Output, amount: float, grid: int = 20, iterations: int = 40) -> Split:
    """The share of ``amount`` for venue ``a`` (rest to ``b``) that maximises total output.

    Unless the marginal rates settle it at once (:func:`_all_to_one`), a coarse grid first finds
    the best region (and steps over shares one venue cannot fill, where the output is ``-inf``),
    then a golden-section search refines it.
    """
    settled = _all_to_one(a, b, amount)
    if settled is not None:
        return settled
    coarse = max((evaluate(a, b, amount, i / grid) for i in range(grid + 1)), key=lambda split: split.total)
    if coarse.total == -math.inf:
        return coarse
    lo, hi = max(0.0, coarse.share_a - 1 / grid), min(1.0, coarse.share_a + 1 / grid)
    x1 = hi - _INV_PHI * (hi - lo)
    x2 = lo + _INV_PHI * (hi - lo)
    f1 = evaluate(a, b, amount, x1).total
    f2 = evaluate(a, b, amount, x2).total
    for _ in range(iterations):
        if f1 < f2:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + _INV_PHI * (hi - lo)
            f2 = evaluate(a, b, amount, x2).total
        else:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - _INV_PHI * (hi - lo)
            f1 = evaluate(a, b, amount, x1).total
    candidates = [coarse, evaluate(a, b, amount, 0.0), evaluate(a, b, amount, 1.0), evaluate(a, b, amount, (lo + hi) / 2)]
    return max(candidates, key=lambda split: split.total)
