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


def best_split(a: Output, b: Output, amount: float, grid: int = 20, iterations: int = 40) -> Split:
    """The share of ``amount`` for venue ``a`` (rest to ``b``) that maximises total output.

    A coarse grid first finds the best region (and steps over shares one venue cannot
    fill, where the output is ``-inf``), then a golden-section search refines it.
    """
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
