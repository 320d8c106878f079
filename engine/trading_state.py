"""The kill switch: which trading is halted, and what a halt stops. Pure rules (nautilus_trader's
trading states, with a scope).

A scope is the whole engine (``*``) or one pair. A pair is unordered: halting ``SOL/USDC`` halts orders
from SOL to USDC and from USDC to SOL. While a scope is halted, new submissions in it are refused, no
queued order in it is dispatched and no waiting LIMIT/SNIPER order in it fires; cancels and expiries
still close orders, and swaps already submitted finish.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from engine.tokens import canonical_token

GLOBAL = "*"
"""The scope of the whole engine."""


class TradingState(StrEnum):
    ACTIVE = "active"
    HALTED = "halted"


def pair_scope(token_a: str, token_b: str) -> str:
    """The scope of a pair, whichever way it is traded: its two canonical tokens, sorted, joined by ``/``."""
    first, second = sorted((token_a, token_b))
    return f"{first}/{second}"


def parse_pair(raw: str) -> str | None:
    """The scope a client's ``"SOL/USDC"`` (any case, symbols or mints) names, or None if it is not a pair."""
    left, sep, right = raw.partition("/")
    a, b = canonical_token(left), canonical_token(right)
    if not sep or a is None or b is None or a == b:
        return None
    return pair_scope(a, b)


@dataclass(frozen=True, slots=True)
class ScopeState:
    """The state of one scope and the change that set it: who, when (epoch ms) and why."""

    scope: str
    state: TradingState
    reason: str
    changed_by: str
    changed_at: float

    def public(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "state": self.state.value,
            "reason": self.reason,
            "changedBy": self.changed_by,
            "changedAt": round(self.changed_at),
        }
        if self.scope != GLOBAL:
            body["pair"] = self.scope
        return body

    def to_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "state": self.state.value, "reason": self.reason, "by": self.changed_by, "at": self.changed_at}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScopeState:
        return cls(str(data["scope"]), TradingState(data["state"]), str(data["reason"]), str(data["by"]), float(data["at"]))


@dataclass(frozen=True, slots=True)
class TradingStates:
    """The halted scopes (a scope not listed is active)."""

    halted: Mapping[str, ScopeState] = field(default_factory=dict)

    @classmethod
    def of(cls, states: Iterable[ScopeState]) -> TradingStates:
        return cls({s.scope: s for s in states if s.state is TradingState.HALTED})

    def apply(self, change: ScopeState) -> TradingStates:
        halted = dict(self.halted)
        if change.state is TradingState.HALTED:
            halted[change.scope] = change
        else:
            halted.pop(change.scope, None)
        return TradingStates(halted)

    @property
    def globally(self) -> ScopeState | None:
        return self.halted.get(GLOBAL)

    def halt_for(self, token_in: str, token_out: str) -> ScopeState | None:
        """The halt that stops an order on this pair (the global one first), or None if it may trade."""
        return self.halted.get(GLOBAL) or self.halted.get(pair_scope(token_in, token_out))

    def blocks(self, token_in: str, token_out: str) -> bool:
        return self.halt_for(token_in, token_out) is not None
