"""Pool math for the simulated venues, pure and synchronous.

Two models, one interface (:class:`Pool`):

* :class:`ConstantProductPool` - Raydium's AMM v4: ``x * y = k`` with a fee taken on the input.
* :class:`BinnedPool` - Meteora's DLMM: liquidity sits in discrete price bins; a swap
  empties bins one after another, so the price moves bin by bin. The fee is a base fee
  plus a variable fee that grows with recent volatility (bins crossed lately).

Prices are always "quote per base" (``y`` per ``x``). ``x_to_y`` means the trader sells base.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Protocol


class PoolExhausted(ValueError):
    """The pool has too little liquidity on the output side to fill the trade."""


@dataclass(frozen=True, slots=True)
class Fill:
    """The result of running an amount through a pool (nothing is mutated by computing it)."""

    amount_in: float
    amount_out: float
    fee_bps: float
    spot_price: float  # output per input, before the trade
    price_impact_pct: float  # how much worse than spot the pre-fee price is, in percent
    liquidity_out: float  # output-side depth before the trade


class Pool(Protocol):
    def spot(self) -> float: ...
    def fill(self, amount_in: float, x_to_y: bool) -> Fill: ...
    def swap(self, amount_in: float, x_to_y: bool) -> Fill: ...
    def move_price_to(self, price: float) -> None: ...
    def decay(self, seconds: float) -> None: ...
    def reserves(self) -> tuple[float, float]:
        """What the pool holds, ``(x, y)``: what its vaults hold on a chain."""

    def set_reserves(self, x: float, y: float) -> None:
        """Make the pool hold ``(x, y)`` (read from its vaults), keeping its shape."""

    def copy(self) -> Pool:
        """An independent copy of the state (a snapshot the router can price against)."""


def _impact_pct(amount_after_fee: float, amount_out: float, spot_out_per_in: float) -> float:
    if amount_after_fee <= 0 or spot_out_per_in <= 0:
        return 0.0
    realised = amount_out / amount_after_fee
    return max(0.0, (1.0 - realised / spot_out_per_in) * 100.0)


@dataclass(slots=True)
class ConstantProductPool:
    reserve_x: float
    reserve_y: float
    fee_bps: float = 25.0

    def spot(self) -> float:
        return self.reserve_y / self.reserve_x

    def fill(self, amount_in: float, x_to_y: bool) -> Fill:
        if amount_in <= 0:
            raise ValueError("amount_in must be positive")
        after_fee = amount_in * (1.0 - self.fee_bps / 10_000)
        r_in, r_out = (self.reserve_x, self.reserve_y) if x_to_y else (self.reserve_y, self.reserve_x)
        out = r_out * after_fee / (r_in + after_fee)
        spot = r_out / r_in
        return Fill(amount_in, out, self.fee_bps, spot, _impact_pct(after_fee, out, spot), r_out)

    def swap(self, amount_in: float, x_to_y: bool) -> Fill:
        result = self.fill(amount_in, x_to_y)
        # The fee stays in the pool, as on Raydium: k grows a little with every swap.
        if x_to_y:
            self.reserve_x += amount_in
            self.reserve_y -= result.amount_out
        else:
            self.reserve_y += amount_in
            self.reserve_x -= result.amount_out
        return result

    def move_price_to(self, price: float) -> None:
        """Arbitrage the pool to ``price`` keeping ``k``: what traders elsewhere do to it."""
        k = self.reserve_x * self.reserve_y
        self.reserve_x = math.sqrt(k / price)
        self.reserve_y = math.sqrt(k * price)

    def decay(self, seconds: float) -> None:
        """Constant-product pools have no time-dependent state."""

    def reserves(self) -> tuple[float, float]:
        return (self.reserve_x, self.reserve_y)

    def set_reserves(self, x: float, y: float) -> None:
        if x <= 0 or y <= 0:
            raise PoolExhausted(f"a constant-product pool needs both reserves; got {x:.6g} and {y:.6g}")
        self.reserve_x, self.reserve_y = x, y

    def copy(self) -> ConstantProductPool:
        return ConstantProductPool(self.reserve_x, self.reserve_y, self.fee_bps)


@dataclass(slots=True)
class BinnedPool:
    """A DLMM pool: ``bins`` holds ``[x, y]`` per bin; bin ``i`` trades at ``origin * (1 + step) ** i``.

    Bins below the active one hold only ``y``, bins above only ``x``, the active bin both.
    """

    origin_price: float
    bin_step_bps: float
    bins: dict[int, list[float]]
    active: int = 0
    base_fee_bps: float = 20.0
    variable_fee_control: float = 2.0  # bps per (bins crossed)^2 of recent volatility
    max_variable_fee_bps: float = 150.0
    volatility_half_life_s: float = 30.0
    volatility: float = 0.0  # recent bins crossed, decaying
    _growth: float = field(init=False, default=1.0)

    def __post_init__(self) -> None:
        self._growth = 1.0 + self.bin_step_bps / 10_000

    @classmethod
    def uniform(
        cls,
        price: float,
        depth_y: float,
        bin_step_bps: float,
        bins_each_side: int,
        **fees: Any,
    ) -> BinnedPool:
        """A pool centred on ``price`` with ``depth_y`` of value (in y) spread evenly over its bins."""
        per_bin = depth_y / (2 * bins_each_side + 1)
        growth = 1.0 + bin_step_bps / 10_000
        bins: dict[int, list[float]] = {}
        for i in range(-bins_each_side, bins_each_side + 1):
            p = price * growth**i
            if i < 0:
                bins[i] = [0.0, per_bin]
            elif i > 0:
                bins[i] = [per_bin / p, 0.0]
            else:
                bins[i] = [per_bin / 2 / p, per_bin / 2]
        return cls(origin_price=price, bin_step_bps=bin_step_bps, bins=bins, **fees)

    def price_of(self, index: int) -> float:
        return self.origin_price * self._growth**index

    def copy(self) -> BinnedPool:
        """Bins copied one by one: ~20x cheaper than ``copy.deepcopy``, which a snapshot per routing paid."""
        return dataclasses.replace(self, bins={index: [x, y] for index, (x, y) in self.bins.items()})

    def spot(self) -> float:
        return self.price_of(self.active)

    def fee_bps(self) -> float:
        variable = self.variable_fee_control * self.volatility**2
        return self.base_fee_bps + min(self.max_variable_fee_bps, variable)

    def _walk(self, amount_in: float, x_to_y: bool, apply: bool) -> Fill:
        if amount_in <= 0:
            raise ValueError("amount_in must be positive")
        fee = self.fee_bps()
        after_fee = amount_in * (1.0 - fee / 10_000)
        remaining = after_fee
        out = 0.0
        index = self.active
        step = -1 if x_to_y else 1
        spot_out_per_in = self.spot() if x_to_y else 1.0 / self.spot()
        depth = sum(b[1] if x_to_y else b[0] for i, b in self.bins.items() if (i <= index if x_to_y else i >= index))
        touched: list[tuple[int, float, float]] = []  # (bin, in added, out removed)
        while remaining > 1e-18:
            bin_ = self.bins.get(index)
            if bin_ is None:
                raise PoolExhausted(f"pool exhausted after {out:.6g} out; {remaining:.6g} in left")
            p = self.price_of(index)
            available = bin_[1] if x_to_y else bin_[0]
            capacity_in = available / p if x_to_y else available * p
            if remaining >= capacity_in:
                out += available
                touched.append((index, capacity_in, available))
                remaining -= capacity_in
                index += step
            else:
                got = remaining * p if x_to_y else remaining / p
                out += got
                touched.append((index, remaining, got))
                remaining = 0.0
        result = Fill(amount_in, out, fee, spot_out_per_in, _impact_pct(after_fee, out, spot_out_per_in), depth)
        if apply:
            for i, added, removed in touched:
                if x_to_y:
                    self.bins[i][0] += added
                    self.bins[i][1] = max(0.0, self.bins[i][1] - removed)
                else:
                    self.bins[i][1] += added
                    self.bins[i][0] = max(0.0, self.bins[i][0] - removed)
            crossed = abs(index - self.active)
            self.active = index
            self.volatility += crossed
        return result

    def fill(self, amount_in: float, x_to_y: bool) -> Fill:
        return self._walk(amount_in, x_to_y, apply=False)

    def swap(self, amount_in: float, x_to_y: bool) -> Fill:
        return self._walk(amount_in, x_to_y, apply=True)

    def move_price_to(self, price: float) -> None:
        """Arbitrage to the bin holding ``price``: crossed bins change sides, as if traders swapped through them."""
        target = round(math.log(price / self.origin_price) / math.log(self._growth))
        lo, hi = min(self.bins), max(self.bins)
        target = max(lo, min(hi, target))
        if target < self.active:
            for i in range(self.active, target, -1):
                x, y = self.bins[i]
                self.bins[i] = [x + y / self.price_of(i), 0.0]
        elif target > self.active:
            for i in range(self.active, target):
                x, y = self.bins[i]
                self.bins[i] = [0.0, y + x * self.price_of(i)]
        self.volatility += abs(target - self.active)
        self.active = target

    def decay(self, seconds: float) -> None:
        self.volatility *= 0.5 ** (seconds / self.volatility_half_life_s)

    def reserves(self) -> tuple[float, float]:
        return (sum(b[0] for b in self.bins.values()), sum(b[1] for b in self.bins.values()))

    def set_reserves(self, x: float, y: float) -> None:
        """Each side's bins scaled to the new total (the bins' shape is the pool's program state; the
        totals are its vaults'). A side that was empty gets its tokens in the active bin."""
        have_x, have_y = self.reserves()
        for side, have, want in ((0, have_x, x), (1, have_y, y)):
            if have > 0:
                factor = max(0.0, want) / have
                for bin_ in self.bins.values():
                    bin_[side] *= factor
            elif want > 0:
                self.bins.setdefault(self.active, [0.0, 0.0])[side] = want
