"""One engine for a load tool, with stores of its own: a database and role, a Redis key prefix, a Ray temp dir.

The process itself is :class:`runtime.process.EngineProcess`; this adds the stores (created before the start,
dropped after the stop), the watch over its processes, and a stop that verifies nothing of it is left.
Why each engine gets its own PostgreSQL role is in ``loadtest/bench/README.md`` ("Engines and their stores").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import redis.asyncio as aioredis

from loadtest.monitor import ProcessWatch, label
from runtime.embedded import with_database
from runtime.process import EngineProcess, EngineStartError

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
        command: Sequence[str] | None = None,
    ) -> None:
        tag = secrets.token_hex(4)
        self.stores = stores or Stores()
        self.name = name
        self.database = f"oee_bench_{os.getpid()}_{tag}"
        self.pg_connection_limit = pg_connection_limit
        self.role = f"oee_bench_{tag}" if pg_connection_limit > 0 else "postgres"
        self.database_url = self.stores.pg_url(self.role, self.database)
        self.admin_database_url = self.stores.pg_url("postgres", self.database)
        self.redis_prefix = f"oee-bench-{tag}:"
        self.settings_env = dict(env)
        self.process = EngineProcess(
            {
                "OEE_HOST": "127.0.0.1",
                "OEE_REDIS_URL": self.stores.redis_url,
                "OEE_REDIS_PREFIX": self.redis_prefix,
                "OEE_DATABASE_URL": self.database_url,
                **(extra_env or {}),
                **env,
            },
            base_env={k: v for k, v in os.environ.items() if not k.startswith("OEE_")},
            log_path=log_path,
            ray_dir=f"/tmp/oee-bench-{tag}",
            die_with_parent=True,
            command=command,
        )
        self.port = self.process.port
        self.url = self.process.url
        self.ws_url = self.process.ws_url
        self.ray_dir = self.process.ray_dir
        self.log_path = log_path
        self.watch: ProcessWatch | None = None
        self.started = False
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

    async def start(self) -> None:
        """Create the stores, start the engine and wait until it is healthy (however long a busy machine takes)."""
        await self._create_stores()
        t0 = time.perf_counter()
        # spawned on this (the event loop's) thread: the engine's parent-death signal follows this thread
        self.process.spawn()
        self.started = True
        assert self.process.proc is not None
        self.watch = ProcessWatch(self.process.proc.pid, self.ray_dir)
        try:
            await asyncio.to_thread(self.process.wait_healthy)
        except EngineStartError as exc:
            raise EngineStartError(f"engine {self.name}: {exc.reason}", exc.exit_code, exc.log_tail) from None
        self.start_s = time.perf_counter() - t0

    async def stop(self, timeout_s: float = 120.0) -> None:
        """SIGTERM; verify nothing of the engine (raylet included) is left; clean the stores; never raises."""
        t0 = time.perf_counter()
        self.stopped = True
        try:
            if self.process.proc is not None:
                if self.watch is not None and self.process.proc.poll() is None:
                    await asyncio.to_thread(self.watch.processes)  # remember every pid before they go
                await asyncio.to_thread(self.process.stop, timeout_s)
            self.exit_code = self.process.exit_code
            self.killed_group = self.process.forced
            self.stop_s = time.perf_counter() - t0
            await self._reap_leftovers()
        finally:
            with contextlib.suppress(Exception):
                await self._drop_stores()
            self.process.discard(keep_log=True)

    async def _reap_leftovers(self, wait_s: float = 60.0) -> None:
        """Wait for the engine's processes to exit on their own; kill (and list) those still there after ``wait_s``."""
        if self.watch is None:
            return
        deadline = time.monotonic() + wait_s
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
        return self.process.log_tail(lines)

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
