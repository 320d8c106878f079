"""The order-type registry: each order type is a policy (:class:`OrderTypePolicy`), registered by name.

Adding an order type is one module with its policy and one :func:`register` call below.
"""

from __future__ import annotations

from engine.bands import Band
from engine.models import Order
from engine.order_types.limit import Limit
from engine.order_types.market import Market
from engine.order_types.policy import OrderTypePolicy
from engine.order_types.sniper import Sniper

_POLICIES: dict[str, OrderTypePolicy] = {}


class UnknownOrderType(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def register(policy: OrderTypePolicy) -> OrderTypePolicy:
    """Make ``policy.name`` a valid ``orderType`` everywhere (intake, execution, watcher, queue)."""
    _POLICIES[policy.name] = policy
    return policy


def unregister(name: str) -> None:
    _POLICIES.pop(name, None)


def names() -> list[str]:
    return list(_POLICIES)


def policy_of(name: str) -> OrderTypePolicy:
    """The policy of a registered type; raises :class:`UnknownOrderType` otherwise."""
    try:
        return _POLICIES[name]
    except KeyError:
        raise UnknownOrderType(name) from None


def canonical(name: str) -> str | None:
    """The registered name ``name`` stands for (the policy's own object), or None."""
    policy = _POLICIES.get(name)
    return policy.name if policy is not None else None


def problem_field(code: str) -> str | None:
    """The request field an order type's check error ``code`` is about, if a registered type says."""
    return next((policy.problem_fields[code] for policy in _POLICIES.values() if code in policy.problem_fields), None)


def band_of(order: Order) -> Band:
    """The queue band of the order's next run: a cancel request first, else what its type says."""
    if order.cancel_requested:
        return Band.CONTROL
    return policy_of(order.order_type).band(order)


register(Market())
register(Limit())
register(Sniper())
