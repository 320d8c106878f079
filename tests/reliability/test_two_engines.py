"""Two whole engines on the same PostgreSQL database and Redis prefix (two ``scripts/run`` on one
machine, or two clusters side by side during an upgrade).

One dispatches, the other stands by (healthy, not dispatching); 30 orders sent to both engines'
HTTP run once each (one ``routing`` and one ``submitted`` event per order, counted in the journal).
Then 30 more, and the active engine is killed -9 with orders in flight: the standby takes the
dispatch lease over, every order ends terminal with at most one swap per route leg in the venues'
ledger (a swap cut off with the venue that was making it never landed: that order is routed and
submitted again, as after any crash), and a client polling GET on the surviving engine never sees a
terminal state change.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.engine_process import EngineProcess
from tests.reliability.conftest import Stacks, kill_engine
from tests.reliability.helpers import TERMINAL, audit, pg_connect, submit_orders, wait_mix, wait_terminal

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ORDERS = 30
ENV = {
    "OEE_QUOTE_LATENCY_MS": "100",
    "OEE_SWAP_LATENCY_MS": "600-900",
    "OEE_MAX_CONCURRENT_ORDERS": "10",
    "OEE_DISPATCH_LEASE_TTL_S": "6",
    "OEE_DISPATCH_LEASE_RENEW_S": "1",
}


async def _role(engine: EngineProcess) -> str:
    async with httpx.AsyncClient(base_url=engine.url, timeout=10) as client:
        body: dict[str, Any] = (await client.get("/health")).json()
    return str(body.get("dispatcher"))


async def _gauge(engine: EngineProcess, name: str) -> float | None:
    """A metric's value in the engine's ``GET /metrics`` (summed over its series), None if absent."""
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as client:
        text = (await client.get("/metrics")).text
    values = [float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)]
    return sum(values) if values else None


async def _roles(engines: list[EngineProcess], timeout_s: float = 120.0) -> list[str]:
    """Each engine's role, once exactly one is active (waiting for a start-up to settle)."""
    deadline = time.monotonic() + timeout_s
    while True:
        roles = [await _role(engine) for engine in engines]
        if roles.count("active") == 1 and roles.count("standby") == len(engines) - 1:
            return roles
        assert time.monotonic() < deadline, f"no single active dispatcher: {roles}"
        await asyncio.sleep(0.5)


async def _event_counts(database_url: str, ids: list[str], status: str) -> Counter[str]:
    conn = await pg_connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT order_id, count(*) AS n FROM order_events WHERE order_id = any($1::text[]) AND status = $2 GROUP BY order_id",
            ids,
            status,
        )
    finally:
        await conn.close()
    return Counter({row["order_id"]: int(row["n"]) for row in rows})


class Poller:
    """A client polling GET for every order it knows, recording each order's statuses as seen."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ids: list[str] = []
        self.seen: dict[str, list[str]] = {}
        self.polls = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                for order_id in list(self.ids):
                    try:
                        response = await client.get(f"/api/orders/{order_id}")
                    except httpx.HTTPError:
                        continue
                    if response.status_code != 200:
                        continue
                    status = str(response.json()["status"])
                    trail = self.seen.setdefault(order_id, [])
                    if not trail or trail[-1] != status:
                        trail.append(status)
                    self.polls += 1
                await asyncio.sleep(0.05)

    def flips(self) -> dict[str, list[str]]:
        """Orders seen terminal and later in another state."""
        out = {}
        for order_id, trail in self.seen.items():
            first_terminal = next((i for i, s in enumerate(trail) if s in TERMINAL), None)
            if first_terminal is not None and len(trail) > first_terminal + 1:
                out[order_id] = trail
        return out

    def stop(self) -> None:
        self._stop.set()


async def test_two_engines_one_dispatches_and_the_standby_takes_over(stacks: Stacks) -> None:
    stack = stacks.new()
    db = stack.stores.database_url
    first = stack.engine(**ENV)
    await asyncio.to_thread(first.start)
    second = stack.engine(**ENV)
    await asyncio.to_thread(second.start)
    engines = [first, second]
    roles = await _roles(engines)
    active, standby = (first, second) if roles[0] == "active" else (second, first)

    # -- both running: orders sent to both engines' HTTP run once each
    half = ORDERS // 2
    (ids_a, _), (ids_b, _) = await asyncio.gather(submit_orders(first.url, half), submit_orders(second.url, ORDERS - half, start=half))
    ids = ids_a + ids_b
    poller = Poller(standby.url)
    poller.ids.extend(ids)
    polling = asyncio.create_task(poller.run())
    await wait_terminal(db, ids, timeout_s=240)
    routed = await _event_counts(db, ids, "routing")
    submitted = await _event_counts(db, ids, "submitted")
    before = await audit(db, ids, stack.chain.url)
    print(
        f"\ntwo engines, {ORDERS} orders sent to both: routing events {sum(routed.values())}, submitted events "
        f"{sum(submitted.values())}, outcomes {dict(before.by_status)}; roles {roles}"
    )
    assert all(routed[order_id] == 1 for order_id in ids), {k: v for k, v in routed.items() if v != 1}
    assert all(submitted[order_id] <= 1 for order_id in ids), {k: v for k, v in submitted.items() if v > 1}
    assert sum(submitted.values()) >= before.by_status["confirmed"]  # each confirmed order was submitted, once
    assert not before.problems(), before.problems()
    assert await _roles(engines) == roles  # the standby stayed on standby
    assert await _gauge(active, "oee_dispatcher_active") == 1.0
    assert await _gauge(standby, "oee_dispatcher_active") == 0.0

    # -- the active engine killed -9 with orders in flight: the standby takes over
    later, _ = await submit_orders(standby.url, ORDERS, start=ORDERS)
    poller.ids.extend(later)
    seen = await wait_mix(db, later, {"submitted": 3, "pending": 5}, timeout_s=60)
    report = await asyncio.to_thread(kill_engine, active)
    killed_at = time.monotonic()
    assert not report.left, f"engine processes survived kill -9: {report.left}"
    deadline = time.monotonic() + 120
    while await _role(standby) != "active":
        assert time.monotonic() < deadline, "the standby never took the dispatch lease over"
        await asyncio.sleep(0.2)
    takeover_s = time.monotonic() - killed_at
    deadline = time.monotonic() + 60
    while await _gauge(standby, "oee_dispatcher_active") != 1.0:  # scraped from the dispatcher itself
        assert time.monotonic() < deadline, "oee_dispatcher_active never turned 1 on the new active engine"
        await asyncio.sleep(0.5)
    await wait_terminal(db, later, timeout_s=240)
    finished_s = time.monotonic() - killed_at
    await asyncio.sleep(1.0)  # a last round of polls over the finished orders
    poller.stop()
    await polling

    after = await audit(db, later, stack.chain.url)
    submitted_later = await _event_counts(db, later, "submitted")
    routed_later = await _event_counts(db, later, "routing")
    print(
        f"killed the active engine with {dict(seen)} (of {ORDERS}); the standby took over in {takeover_s:.1f}s, all terminal "
        f"{finished_s:.1f}s after the kill: {dict(after.by_status)}; routing events {sum(routed_later.values())}, submitted "
        f"events {sum(submitted_later.values())}; GET polls {poller.polls}, terminal flips {len(poller.flips())}"
    )
    assert not after.problems(), after.problems()  # every order terminal, one terminal event, no double swap
    assert not poller.flips(), poller.flips()
