"""The benchmark harness runs end to end in its tiny mode and writes a complete report. No performance assertions.

``python -m loadtest.bench --quick --tiny --no-overlap`` starts three engines one after another, runs every measurement for a
second or two, and must exit 0 and leave a JSON report with every section and a number in every field
that the table is built from. Without PostgreSQL/Redis on their local ports it runs on embedded ones.
No speed limit either: the run waits on conditions (an engine healthy, orders terminal), however long a
busy machine takes; the test's timeout only catches a run that hangs.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

TIMEOUT_S = 1200  # a hung run, not a slow one: ~10x what it took on a machine busy with other jobs

REQUIRED: dict[str, list[str]] = {
    "intake": [
        "runs.post_c10.rps",
        "runs.post_c10.p50_ms",
        "runs.post_c10.p99_ms",
        "runs.post_c10.errors",
        "runs.post_c50.rps",
        "runs.post_c50.p99_ms",
        "runs.ceiling_c10.rps",
        "runs.ceiling_c50.rps",
        "runs.ceiling_c50.p99_ms",
        "durability_cost_ratio.c10",
        "durability_cost_ratio.c50",
    ],
    "capacity": ["orders_per_s", "accepted", "not_terminal", "missing_in_postgres", "drain_s"],
    "overhead": [
        "measured_orders",
        "warm_up_overhead_ms.n",
        "overhead_p50_ms",
        "overhead_p99_ms",
        "routing_ratio_p50",
        "routing_ratio_p99",
    ],
    "fanout": ["subscribers", "connected", "latency_p50_ms", "latency_p99_ms", "dropped_events", "live_events", "steady_state.events"],
    "memory": ["idle_rss_mb", "idle_processes", "load_rss_mb"],
}


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM the bench, wait for its clean-up, kill it if that hangs; what it still printed."""
    proc.send_signal(signal.SIGTERM)
    try:
        output, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    return output or ""


def _field(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        assert isinstance(data, dict) and part in data, f"missing {dotted}"
        data = data[part]
    return data


@pytest.mark.timeout(TIMEOUT_S)
def test_tiny_bench_runs_and_reports_every_section(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OEE_")}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    # one engine at a time: three starting at once on a loaded machine is what timed out before
    cmd = [sys.executable, "-m", "loadtest.bench", "--quick", "--tiny", "--no-overlap", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate()
    except BaseException:  # the test's timeout (or an interrupt): the bench stops its engines and drops its stores on SIGTERM
        print(_stop(proc)[-4000:])
        raise
    assert proc.returncode == 0, output[-4000:]

    reports = list(tmp_path.glob("bench-*.json"))
    assert len(reports) == 1, sorted(p.name for p in tmp_path.iterdir())
    assert len(list(tmp_path.glob("bench-*.csv"))) == 1
    data = json.loads(reports[0].read_text())
    assert "error" not in data, data.get("error")
    for section, fields in REQUIRED.items():
        assert section in data, f"section {section} missing"
        for dotted in fields:
            value = _field(data[section], dotted)
            summary = {k: v for k, v in data[section].items() if k not in ("cpu", "timeline", "stages")}
            problem = f"{section}.{dotted} = {value!r}: {summary}\n{output[-3000:]}"
            assert isinstance(value, int | float) and not isinstance(value, bool), problem
            assert math.isfinite(value), f"{section}.{dotted} = {value!r}"
    assert data["fanout"]["connected"] == data["fanout"]["subscribers"]
    # correctness, not speed: every order a 202 answered is in that engine's PostgreSQL and ended
    assert data["capacity"]["missing_in_postgres"] == 0, data["capacity"]["missing_ids"]
    assert data["capacity"]["not_terminal"] == 0, data["capacity"]["not_terminal_ids"]
    for engine in data["engines"]:
        assert engine["exit_code"] == 0, engine
        assert not engine["raylet_left"], engine
