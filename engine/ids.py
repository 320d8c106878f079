"""Order identifiers: ``order_<epoch-ms>_<8 hex>``, typed so they are not confused with other strings."""

from __future__ import annotations

import re
import secrets
from typing import NewType

OrderId = NewType("OrderId", str)

ORDER_ID_PATTERN = re.compile(r"^order_[0-9]{13}_[0-9a-f]{8}$")


def new_order_id(now_ms: int, suffix: str | None = None) -> OrderId:
    """A fresh id; the epoch-ms prefix sorts ids by submission time."""
    tail = suffix if suffix is not None else secrets.token_hex(4)
    return OrderId(f"order_{now_ms:013d}_{tail}")


def parse_order_id(raw: str) -> OrderId | None:
    """The id if ``raw`` is well formed, else None (used to refuse junk before any lookup)."""
    if len(raw) <= 64 and ORDER_ID_PATTERN.fullmatch(raw):
        return OrderId(raw)
    return None
