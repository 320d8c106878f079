"""``--profile``: py-spy record of the engine's main actors during the heaviest phases, and their busiest functions."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from loadtest.engine_run import EngineRun
from loadtest.monitor import label

PROFILED = (
    "ray::ProxyActor",
    "ray::ServeReplica",
    "ray::OrderExecutor",
    "ray::Dispatcher",
    "ray::StatusHub",
    "ray::ChainNode",
    "ray::RaydiumQuoter",
    "ray::MeteoraQuoter",
    "runtime",
)


async def profile(engine: EngineRun, out: Path, tag: str, delay_s: float, seconds: float) -> list[dict[str, Any]]:
    """py-spy record (raw, non-blocking, 50 Hz, busy threads only) of the engine's main actors; their busiest functions."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None or engine.watch is None or seconds < 1:
        return []
    await asyncio.sleep(delay_s)
    procs = [p for p in await asyncio.to_thread(engine.watch.processes) if label(p).startswith(PROFILED)]
    jobs = []
    for proc in procs:
        path = out / f"profile-{tag}-{label(proc).replace(':', '_')}-{proc.pid}.txt"
        cmd = [
            spy,
            "record",
            "--nonblocking",
            "-r",
            "50",
            "-d",
            str(int(seconds)),
            "-f",
            "raw",
            "-o",
            str(path),
            "-p",
            str(proc.pid),
        ]
        job = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        jobs.append((proc, path, job))
    results = []
    for proc, path, job in jobs:
        await job.wait()
        results.append(
            {
                "process": label(proc),
                "pid": proc.pid,
                "file": str(path),
                "busy_samples": _samples(path),
                **_shares(path),
                "top_functions_inclusive": _top_frames(path),
            }
        )
    return results


def _samples(path: Path) -> int:
    try:
        return sum(
            int(line.rpartition(" ")[2]) for line in path.read_text(errors="replace").splitlines() if line.rpartition(" ")[2].isdigit()
        )
    except OSError:
        return 0


_ENGINE_FILES = ("(serve_app.py:", "(api/", "(engine/", "(venues/", "(actors/")


def _shares(path: Path) -> dict[str, float]:
    """Share of py-spy's busy samples with the engine's own code (api/, engine/, venues/, actors/) on the stack (a lower bound)."""
    engine = total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in lines:
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        engine += int(n) * any(marker in f for f in stack.split(";") for marker in _ENGINE_FILES)
    return {"engine_code_pct": round(100 * engine / total, 1)} if total else {}


_GENERIC_FRAMES = (
    "Thread.run ",
    "Thread._bootstrap",
    "_worker (concurrent",
    "main_loop",
    "run_forever",
    "_run_once",
    "Handle._run",
    "<module>",
)


def _top_frames(path: Path, count: int = 12) -> list[str]:
    """Functions present in the most samples (inclusive), wrappers of every stack left out."""
    inclusive: Counter[str] = Counter()
    total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        for frame in set(stack.split(";")):
            if frame and not any(g in frame for g in _GENERIC_FRAMES):
                inclusive[frame] += int(n)
    return [f"{100 * n / total:.0f}% {frame}" for frame, n in inclusive.most_common(count)] if total else []


class Profiler:
    """Starts a :func:`profile` beside a phase when ``--profile`` is on, and collects the results."""

    def __init__(self, enabled: bool, out: Path) -> None:
        self.enabled = enabled
        self.out = out
        self.results: list[dict[str, Any]] = []

    def start(self, engine: EngineRun, tag: str, phase_s: float) -> asyncio.Task[list[dict[str, Any]]] | None:
        if not self.enabled:
            return None
        seconds = min(10.0, phase_s - 2)
        return asyncio.create_task(profile(engine, self.out, tag, 1.0, seconds))

    async def finish(self, task: asyncio.Task[list[dict[str, Any]]] | None) -> None:
        if task is not None:
            self.results.extend(await task)
