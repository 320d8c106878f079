"""How long each phase runs (full, quick, tiny), and the settings of the engine each phase runs on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    name: str
    intake_s: float
    warmup_s: float
    capacity_s: float
    capacity_ramp_s: float
    drain_timeout_s: float
    overhead_warmup: int
    overhead_orders: int
    overhead_inflight: int
    subscribers: int
    per_order: int
    connect_batch: int
    handshakes: int
    idle_settle_s: float


MODES = {
    "full": Mode("full", 15, 2, 30, 3, 120, 8, 200, 8, 2000, 20, 200, 100, 3),
    "quick": Mode("quick", 3, 1, 5, 1, 60, 8, 16, 8, 100, 20, 100, 50, 2),
    "tiny": Mode("tiny", 1, 0.5, 2, 0.5, 40, 1, 4, 4, 20, 20, 20, 20, 1),
}

DEFAULT_VENUE = {"OEE_QUOTE_LATENCY_MS": "200", "OEE_SWAP_LATENCY_MS": "2000-3000", "OEE_FAULT_RATE": "0"}
LIFTED = {"OEE_RATE_LIMIT_PER_MINUTE": "6000000", "OEE_RATE_LIMIT_BURST": "10000"}
ACCOUNT_LIFTED = {
    "OEE_ACCOUNT_RATE_PER_SECOND": "1000000",
    "OEE_ACCOUNT_RATE_BURST": "1000000",
    "OEE_ACCOUNT_MAX_OPEN_ORDERS": "10000000",
    "OEE_ACCOUNT_MAX_OPEN_NOTIONAL_USD": "1e15",
    "OEE_MAX_QUEUED_ORDERS": "10000000",
}
"""Every engine: the benchmark is one client (the account 'local') measuring the engine, not the per-account
limits; the per-request cost of checking them is measured on its own (docs/decisions/010-accounts-and-limits.md)."""
QUOTE_MS = float(DEFAULT_VENUE["OEE_QUOTE_LATENCY_MS"])

ENGINES = ("intake", "capacity", "default-timings")


def engine_plan(capacity_concurrency: int, only: list[str]) -> list[tuple[str, dict[str, str]]]:
    """Each engine's ``OEE_*`` settings, in the order the phases use them (only those in ``only``, if given)."""
    capacity_env = {
        "OEE_QUOTE_LATENCY_MS": "0",
        "OEE_SWAP_LATENCY_MS": "0",
        "OEE_FAULT_RATE": "0",
        **LIFTED,
        "OEE_MAX_CONCURRENT_ORDERS": str(capacity_concurrency),
    }
    plan = [
        ("intake", {"OEE_RATE_LIMIT_PER_MINUTE": "60"}),
        ("capacity", capacity_env),
        ("default-timings", {**DEFAULT_VENUE, **LIFTED}),
    ]
    return [(name, {**ACCOUNT_LIFTED, **env}) for name, env in plan if not only or name in only]
