"""The engine subprocess for end-to-end and fault tests: :class:`runtime.process.EngineProcess` on a test session's stores."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

from runtime.process import EngineProcess as _Launcher
from tests.conftest import TestStores

FAST_TIMINGS = {
    "OEE_QUOTE_LATENCY_MS": "20",
    "OEE_SWAP_LATENCY_MS": "40-80",
    "OEE_RETRY_BASE_DELAY_MS": "300",
    "OEE_RATE_LIMIT_PER_MINUTE": "60000",
    "OEE_RATE_LIMIT_BURST": "100",
    "OEE_SIM_ADMIN": "true",
    "OEE_WATCH_INTERVAL_MS": "50",
}
"""Short simulated delays and a start limit out of the way: what the end-to-end tiers run with."""


class EngineProcess(_Launcher):
    """An engine on ``stores`` (its database, Redis and key prefix), with 2 Ray CPUs and INFO logs; ``env`` overrides."""

    def __init__(self, stores: TestStores, env: dict[str, str], port: int | None = None) -> None:
        super().__init__(
            {
                "OEE_REDIS_URL": stores.redis_url,
                "OEE_REDIS_PREFIX": stores.redis_prefix,
                "OEE_DATABASE_URL": stores.database_url,
                "OEE_RAY_NUM_CPUS": "2",
                "OEE_LOG_LEVEL": "INFO",
                **env,
            },
            port=port,
            ray_dir=tempfile.mkdtemp(prefix="oee-e2e-ray-", dir="/tmp"),
        )
        self.stores = stores


def running_engine(stores: TestStores, env: dict[str, str]) -> Iterator[EngineProcess]:
    """Start an engine for a fixture's lifetime; stop it and remove its files afterwards
    (``OEE_TEST_SHOW_ENGINE_LOG=1`` prints its log tail first)."""
    proc = EngineProcess(stores, env)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        if os.environ.get("OEE_TEST_SHOW_ENGINE_LOG"):
            print(proc.log_tail())
        proc.discard()
