"""End-to-end tier: the engine started as a user starts it (``python -m runtime``), driven over HTTP and WebSocket."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.conftest import TestStores
from tests.engine_process import FAST_TIMINGS, EngineProcess, running_engine

FAST = {
    **FAST_TIMINGS,
    # Some tests route orders far beyond any sane pre-trade limit (an unfillable 5M SOL, a split of
    # 30,000 SOL): lifted here as the rate limit is; tests/e2e_auth runs the limits at work.
    "OEE_MAX_ORDER_NOTIONAL_USD": "1e15",
    "OEE_MAX_DEPTH_SHARE": "1000",
    "OEE_ACCOUNT_MAX_OPEN_NOTIONAL_USD": "1e15",
    "OEE_WALLET_FUNDING_USD": "1e9",  # and a wallet that can pay for them
}


@pytest.fixture(scope="package")
def engine(stores: TestStores) -> Iterator[EngineProcess]:
    yield from running_engine(stores, FAST)


@pytest.fixture
def unique() -> str:
    return secrets.token_hex(4)
