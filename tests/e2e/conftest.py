"""End-to-end tier: the engine started as a user starts it (``python -m runtime``), driven over HTTP and WebSocket."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.conftest import TestStores
from tests.engine_process import EngineProcess, running_engine

FAST = {
    "OEE_QUOTE_LATENCY_MS": "20",
    "OEE_SWAP_LATENCY_MS": "40-80",
    "OEE_RETRY_BASE_DELAY_MS": "300",
    "OEE_RATE_LIMIT_PER_MINUTE": "60000",
    "OEE_RATE_LIMIT_BURST": "100",
    "OEE_SIM_ADMIN": "true",
    "OEE_WATCH_INTERVAL_MS": "50",
    # Some tests route orders far beyond any sane pre-trade limit (an unfillable 5M SOL, a split of
    # 30,000 SOL): lifted here as the rate limit is; tests/e2e_auth runs the limits at work.
    "OEE_MAX_ORDER_NOTIONAL_USD": "1e15",
    "OEE_MAX_DEPTH_SHARE": "1000",
    "OEE_ACCOUNT_MAX_OPEN_NOTIONAL_USD": "1e15",
}


@pytest.fixture(scope="package")
def engine(stores: TestStores) -> Iterator[EngineProcess]:
    yield from running_engine(stores, FAST)


@pytest.fixture
def unique() -> str:
    return secrets.token_hex(4)
