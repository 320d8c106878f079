"""Reading orders for clients: one order (hot copy first, then the journal) and pages of the history,
with opaque cursors."""

from __future__ import annotations

import base64
import contextlib
from typing import Protocol

from engine.errors import StoreUnavailable
from engine.ids import parse_order_id
from engine.models import Order


class HotCopy(Protocol):
    async def get(self, order_id: str) -> Order | None: ...


class History(Protocol):
    async def get(self, order_id: str) -> Order | None: ...


async def find_order(order_id: str, hot: HotCopy, history: History) -> Order | None:
    """The order's current state: Redis's hot copy if it has one (or is down), else PostgreSQL's.
    Raises :class:`StoreUnavailable` only if PostgreSQL must answer and cannot."""
    with contextlib.suppress(StoreUnavailable):
        found = await hot.get(order_id)
        if found is not None:
            return found
    return await history.get(order_id)


def encode_cursor(order: Order) -> str:
    """The cursor of the page that starts after ``order`` (newest-first order: submitted time, id)."""
    return base64.urlsafe_b64encode(f"{order.submitted_at!r}|{order.order_id}".encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> tuple[float, str] | None:
    """``(submitted ms, order id)`` of a cursor this API returned, or None for anything else."""
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        ms, _, order_id = text.partition("|")
        value = float(ms)
    except (ValueError, UnicodeDecodeError):
        return None
    if parse_order_id(order_id) is None or not (0 < value < 1e15):
        return None
    return value, order_id
