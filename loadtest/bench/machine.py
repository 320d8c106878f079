"""The machine the benchmark runs on: how fast it runs Python now, and who else runs Ray on it."""

from __future__ import annotations

import time

import psutil


def cpu_probe_ms(steps: int = 1_000_000, tries: int = 5) -> float:
    """How fast this machine runs Python right now: the median time of a fixed loop, in ms (a rough gauge; README.md)."""
    times = []
    for _ in range(tries):
        start = time.perf_counter()
        total = 0
        for i in range(steps):
            total += i
        times.append((time.perf_counter() - start) * 1000)
    return round(sorted(times)[tries // 2], 1)


def others_on_machine(own_dirs: list[str]) -> dict[str, int]:
    """Other people's Ray nodes and Serve replicas running now (a source of noise)."""
    raylets = replicas = 0
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if any(d in cmd for d in own_dirs):
            continue
        raylets += "/raylet " in cmd or cmd.endswith("/raylet")
        replicas += cmd.startswith("ray::ServeReplica")
    return {"raylets": raylets, "serve_replicas": replicas}
