"""One engine for the benchmark: started as a user starts it, with its own stores, stopped and cleaned up after.

Each :class:`EngineRun` owns

* a PostgreSQL database ``oee_bench_<pid>_<hex>`` on 127.0.0.1:5432 (created by user postgres), created before
  the start and dropped (``WITH (FORCE)``) after the stop. The engine connects as a role of its own
  (``oee_bench_<hex>``, owner of that database, dropped after) with ``CONNECTION LIMIT`` (``pg_connection_limit``,
  50 by default), because the server allows 100 connections in all and is shared: the engine sizes each
  executor's pool to ``max_concurrent_orders + 2`` (actors/executor.py), so at 200 concurrent orders it
  would take every connection of the server and break other people's tests. A superuser such as postgres
  is not subject to ``CONNECTION LIMIT``, hence the role. ``pg_connection_limit=0`` connects as postgres;
* a Redis key prefix ``oee-bench-<hex>:`` in db 12 of 127.0.0.1:6379; only keys under it are deleted after;
* a Ray temp dir ``/tmp/oee-bench-<hex>`` (``OEE_RAY_TEMP_DIR``, kept short for Ray's unix sockets), removed after;
* a free port (never 8000, 8011 or 8077).

The engine is ``python -m runtime`` in its own session, configured only through ``OEE_*`` variables (any
``OEE_*`` of the caller's environment is dropped first). It gets ``PR_SET_PDEATHSIG`` so it is told to stop
(SIGTERM) if the benchmark dies. :meth:`EngineRun.stop` sends SIGTERM, waits, and then verifies that no
process of the engine (the raylet included) is left: those found are listed and killed by pid.

:class:`ProcessWatch` finds the engine's processes (the engine, its descendants, and any process whose
command line holds the engine's Ray temp dir) for the memory and CPU figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import asyncpg
import psutil
import redis.asyncio as aioredis

from runtime.embedded import _die_with_parent, free_port, with_database

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/12"


@dataclass(frozen=True)
class Stores:
    """The servers the engines' databases and key prefixes go in: the machine's own PostgreSQL and Redis,
    or embedded ones on a machine without them (PostgreSQL then answers on a unix socket)."""

    pg_admin_url: str = PG_ADMIN_URL
    redis_url: str = REDIS_URL

    def pg_url(self, user: str, database: str) -> str:
        """The admin URL with another user and database (keeps the host, port or socket)."""
        return with_database(self.pg_admin_url, database, user)


SHARED_SERVERS = {"postgres": "postgres server (shared)", "redis-server": "redis server (shared)"}


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


def label(proc: psutil.Process) -> str:
    """A readable name: the Ray process title (``ray::OrderExecutor``), a binary name, or a script name."""
    try:
        cmdline = proc.cmdline()
        name = proc.name()
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


class EngineRun:
    """Start, watch and stop one engine with its own database, Redis prefix, Ray temp dir and port."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        log_path: Path,
        extra_env: dict[str, str] | None = None,
        pg_connection_limit: int = 50,
        stores: Stores | None = None,
    ) -> None:
        tag = secrets.token_hex(4)
        self.stores = stores or Stores()
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.database = f"oee_bench_{os.getpid()}_{tag}"
        self.pg_connection_limit = pg_connection_limit
        self.role = f"oee_bench_{tag}" if pg_connection_limit > 0 else "postgres"
        self.database_url = self.stores.pg_url(self.role, self.database)
        self.admin_database_url = self.stores.pg_url("postgres", self.database)
        self.redis_prefix = f"oee-bench-{tag}:"
        self.ray_dir = f"/tmp/oee-bench-{tag}"
        self.log_path = log_path
        self.settings_env = dict(env)
        base = {k: v for k, v in os.environ.items() if not k.startswith("OEE_")}
        self.env = {
            **base,
            "OEE_HOST": "127.0.0.1",
            "OEE_PORT": str(self.port),
            "OEE_REDIS_URL": self.stores.redis_url,
            "OEE_REDIS_PREFIX": self.redis_prefix,
            "OEE_DATABASE_URL": self.database_url,
            "OEE_RAY_TEMP_DIR": self.ray_dir,
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            **(extra_env or {}),
            **env,
        }
        self.proc: asyncio.subprocess.Process | None = None
        self.watch: ProcessWatch | None = None
        self.start_s = 0.0
        self.stop_s = 0.0
        self.exit_code: int | None = None
        self.left_after_sigterm: list[str] = []
        self.killed_group = False
        self._db_created = False
        self._role_created = False
        self.stopped = False

    # -- stores ---------------------------------------------------------------------------------

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.stores.pg_admin_url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def _create_stores(self) -> None:
        if self.role != "postgres":
            await self._admin(f'CREATE ROLE "{self.role}" LOGIN CONNECTION LIMIT {self.pg_connection_limit}')
            self._role_created = True
        await self._admin(f'CREATE DATABASE "{self.database}" OWNER "{self.role}"')
        self._db_created = True

    async def _drop_stores(self) -> None:
        client = aioredis.Redis.from_url(self.stores.redis_url)
        try:
            keys = [k async for k in client.scan_iter(match=f"{self.redis_prefix}*", count=1000)]
            for i in range(0, len(keys), 1000):
                await client.delete(*keys[i : i + 1000])
        finally:
            await client.aclose()
        if self._db_created:
            await self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            self._db_created = False
        if self._role_created:
            await self._admin(f'DROP ROLE IF EXISTS "{self.role}"')
            self._role_created = False

    # -- process --------------------------------------------------------------------------------

    async def start(self, timeout_s: float = 180.0) -> None:
        await self._create_stores()
        os.makedirs(self.ray_dir, exist_ok=True)
        log = _open_log(self.log_path)
        t0 = time.perf_counter()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "runtime",
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self.watch = ProcessWatch(self.proc.pid, self.ray_dir)
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"engine {self.name} exited with {self.proc.returncode}; log: {self.log_path}\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{self.url}/health") as resp:
                        if resp.status == 200:
                            self.start_s = time.perf_counter() - t0
                            return
                await asyncio.sleep(0.5)
        raise RuntimeError(f"engine {self.name} not healthy after {timeout_s:.0f} s; log: {self.log_path}\n{self.log_tail()}")

    async def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM; verify nothing of the engine (raylet included) is left; clean the stores; never raises."""
        t0 = time.perf_counter()
        self.stopped = True
        try:
            if self.proc is not None and self.proc.returncode is None:
                if self.watch is not None:
                    await asyncio.to_thread(self.watch.processes)  # remember every pid before they go
                self.proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(self.proc.wait(), timeout_s)
                except TimeoutError:
                    self.killed_group = True
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    await asyncio.wait_for(self.proc.wait(), 15)
            if self.proc is not None:
                self.exit_code = self.proc.returncode
            self.stop_s = time.perf_counter() - t0
            await self._reap_leftovers()
        finally:
            with contextlib.suppress(Exception):
                await self._drop_stores()
            shutil.rmtree(self.ray_dir, ignore_errors=True)

    async def _reap_leftovers(self) -> None:
        if self.watch is None:
            return
        deadline = time.monotonic() + 15
        alive = await asyncio.to_thread(self.watch.known_alive)
        while alive and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            alive = await asyncio.to_thread(self.watch.known_alive)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                self.left_after_sigterm.append(f"{proc.pid} {label(proc)}")
                proc.kill()

    @property
    def raylet_left(self) -> bool:
        return any("raylet" in entry for entry in self.left_after_sigterm)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_problems(self, top: int = 8) -> dict[str, int]:
        """Warning and error lines of the engine's log, by message (JSON logs) or by first words (Ray's)."""
        found: Counter[str] = Counter()
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return {}
        for line in lines:
            body = line[line.find("{") :] if "{" in line else ""
            if '"level": "warning"' in body or '"level": "error"' in body:
                with contextlib.suppress(ValueError):
                    entry = json.loads(body)
                    detail = str(entry.get("error", ""))[:60]
                    found[f"{entry.get('level')}: {entry.get('msg')}" + (f" ({detail})" if detail else "")] += 1
            elif " ERROR " in line or " WARNING " in line or "Traceback" in line:
                text = line.split("--", 1)[-1].strip() if "--" in line else line
                found[text[:100]] += 1
        return dict(found.most_common(top))

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "port": self.port,
            "settings_env": self.settings_env,
            "start_s": round(self.start_s, 1),
            "stop_s": round(self.stop_s, 1),
            "exit_code": self.exit_code,
            "killed_after_timeout": self.killed_group,
            "left_after_sigterm": self.left_after_sigterm,
            "raylet_left": self.raylet_left,
            "log": str(self.log_path),
            "log_warnings_and_errors": self.log_problems(),
            "pg_role": self.role,
            "pg_connection_limit": self.pg_connection_limit or None,
        }
