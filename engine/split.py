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


def best_split(a: Output, b: Output, amount: float, iterations: int = 80) -> Split:
    """The share of ``amount`` for venue ``a`` (rest to ``b``) that maximises total output."""
    lo, hi = 0.0, 1.0
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
    candidates = [evaluate(a, b, amount, s) for s in (0.0, 1.0, (lo + hi) / 2)]
    return max(candidates, key=lambda split: split.total)
