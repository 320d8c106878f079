"""Where a running engine's processes are and what they take: memory, and CPU per process over a phase."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

SHARED_SERVERS = {"postgres": "postgres server (shared)", "redis-server": "redis server (shared)"}


def label(proc: psutil.Process) -> str:
    """A readable name: the Ray process title (``ray::OrderExecutor``), a binary name, or a script name."""
    try:
        cmdline: list[str] = proc.cmdline()
        name: str = proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "?"
    if name in SHARED_SERVERS:
        return SHARED_SERVERS[name]
    if not cmdline:
        return name
    first = cmdline[0].split()[0] if cmdline[0] else name
    if first.startswith("ray::"):
        return first.split(".")[0] if first.count("::") == 1 else first
    if "python" in os.path.basename(first):
        scripts = [a for a in cmdline[1:] if a.endswith(".py")]
        if scripts:
            return os.path.basename(scripts[0])
        if "-m" in cmdline:
            return cmdline[cmdline.index("-m") + 1]
    return os.path.basename(first)


@dataclass
class ProcessWatch:
    """The engine's processes, their memory and CPU time."""

    root_pid: int
    ray_dir: str
    _known: dict[int, psutil.Process] = field(default_factory=dict)

    def processes(self) -> list[psutil.Process]:
        found: dict[int, psutil.Process] = {}
        try:
            root = psutil.Process(self.root_pid)
            found[root.pid] = root
            for child in root.children(recursive=True):
                found[child.pid] = child
        except psutil.NoSuchProcess:
            pass
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if any(self.ray_dir in part for part in cmdline):
                found.setdefault(proc.pid, proc)
        self._known.update(found)
        return list(found.values())

    def memory(self) -> dict[str, float]:
        """Summed RSS and PSS (MB) of the engine's processes, and how many there are.

        RSS counts shared pages (Ray's object store, libraries) once per process, so the sum overstates
        what the engine takes; PSS splits shared pages between the processes that map them.
        """
        rss = pss = 0
        count = 0
        for proc in self.processes():
            try:
                info = proc.memory_full_info()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            except psutil.AccessDenied:
                info = proc.memory_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
            count += 1
        return {"rss_mb": rss / 2**20, "pss_mb": pss / 2**20, "processes": count}

    def known_alive(self) -> list[psutil.Process]:
        alive = []
        for proc in [*self._known.values(), *self.processes()]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        return list({p.pid: p for p in alive}.values())


def cpu_snapshot(watch: ProcessWatch | None) -> dict[tuple[int, float], tuple[str, float]]:
    """CPU seconds so far of the engine's processes, the shared postgres/redis servers and this process."""
    procs: dict[int, psutil.Process] = {}
    if watch is not None:
        procs.update({p.pid: p for p in watch.processes()})
    for proc in psutil.process_iter(["name"]):
        if proc.info.get("name") in SHARED_SERVERS:
            procs.setdefault(proc.pid, proc)
    me = psutil.Process()
    procs[me.pid] = me
    out: dict[tuple[int, float], tuple[str, float]] = {}
    for proc in procs.values():
        try:
            times = proc.cpu_times()
            name = "benchmark client (this process)" if proc.pid == me.pid else label(proc)
            out[(proc.pid, proc.create_time())] = (name, times.user + times.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


@dataclass
class PhaseUsage:
    """CPU per process label (percent of one core) and memory over one measured phase."""

    name: str
    wall_s: float = 0.0
    cpu_pct: dict[str, float] = field(default_factory=dict)
    machine_busy_pct: float = 0.0
    other_pct: float = 0.0
    rss_peak_mb: float = 0.0
    pss_peak_mb: float = 0.0
    processes_peak: int = 0

    def engine_cpu_s(self, with_shared_servers: bool = False) -> float:
        """CPU seconds of the engine's processes over the phase (optionally with the shared PostgreSQL/Redis)."""
        skip = {"benchmark client (this process)"} | (set() if with_shared_servers else set(SHARED_SERVERS.values()))
        return sum(v for k, v in self.cpu_pct.items() if k not in skip) * self.wall_s / 100

    def as_dict(self) -> dict[str, Any]:
        top = dict(sorted(self.cpu_pct.items(), key=lambda kv: -kv[1]))
        return {
            "phase": self.name,
            "wall_s": round(self.wall_s, 2),
            "cpu_pct_of_one_core": {k: round(v, 1) for k, v in top.items()},
            "machine_busy_pct_of_all_cores": round(self.machine_busy_pct, 1),
            "other_processes_pct_of_one_core": round(self.other_pct, 1),
            "rss_peak_mb": round(self.rss_peak_mb, 1),
            "pss_peak_mb": round(self.pss_peak_mb, 1),
            "processes_peak": self.processes_peak,
        }


def _busy(times: Any) -> float:
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


class PhaseMonitor:
    """``async with PhaseMonitor(watch, name) as usage:``: CPU by process and peak memory over the block."""

    def __init__(self, watch: ProcessWatch | None, name: str, sample_every_s: float = 1.0) -> None:
        self.watch = watch
        self.usage = PhaseUsage(name)
        self._every = sample_every_s
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        assert self.watch is not None
        while True:
            mem = await asyncio.to_thread(self.watch.memory)
            self.usage.rss_peak_mb = max(self.usage.rss_peak_mb, mem["rss_mb"])
            self.usage.pss_peak_mb = max(self.usage.pss_peak_mb, mem["pss_mb"])
            self.usage.processes_peak = max(self.usage.processes_peak, int(mem["processes"]))
            await asyncio.sleep(self._every)

    async def __aenter__(self) -> PhaseUsage:
        self._cpu0 = await asyncio.to_thread(cpu_snapshot, self.watch)
        self._sys0 = psutil.cpu_times()
        self._t0 = time.perf_counter()
        if self.watch is not None:
            self._task = asyncio.create_task(self._sample())
        return self.usage

    async def __aexit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t0
        sys1 = psutil.cpu_times()
        cpu1 = await asyncio.to_thread(cpu_snapshot, self.watch)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        by_label: dict[str, float] = {}
        for key, (name, seconds) in cpu1.items():
            before = self._cpu0.get(key, (name, 0.0))[1]
            by_label[name] = by_label.get(name, 0.0) + max(0.0, seconds - before)
        busy = _busy(sys1) - _busy(self._sys0)
        total = sum(sys1) - sum(self._sys0)
        self.usage.wall_s = wall
        self.usage.cpu_pct = {k: 100 * v / wall for k, v in by_label.items() if v > 0}
        self.usage.machine_busy_pct = 100 * busy / total if total > 0 else 0.0
        self.usage.other_pct = max(0.0, 100 * busy / wall - sum(self.usage.cpu_pct.values()))
