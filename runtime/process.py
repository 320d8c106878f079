"""The engine as its own program (``python -m runtime``), started and stopped the way an operator does.

One launcher for every tool that runs a whole engine: the end-to-end and fault tests, the benchmark and
the other load tools. It owns the process, its session (so the whole group can be killed), its port,
its Ray temp dir, its HAProxy dir and its log; the caller owns the settings (``OEE_*``) and the stores.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from runtime.embedded import die_with_parent, free_port

ROOT = Path(__file__).resolve().parents[1]

START_TIMEOUT_S = 600.0
"""Only a backstop: :meth:`EngineProcess.start` returns as soon as the engine answers ``/health`` and fails as
soon as it exits. A busy machine (other people's engines and tests) has taken 60-90 s to start one."""

# /health is on this machine: never through a proxy from the caller's environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EngineStartError(RuntimeError):
    """The engine exited, or did not answer ``/health`` in time; carries its exit code and the end of its log."""

    def __init__(self, reason: str, exit_code: int | None, log_tail: str) -> None:
        super().__init__(f"{reason}:\n{log_tail}")
        self.reason = reason
        self.exit_code = exit_code
        self.log_tail = log_tail


class EngineProcess:
    """One engine subprocess in a session of its own, configured only through its environment.

    ``env`` is laid over ``base_env`` (default: this process's environment) and over what the launcher
    sets itself: ``OEE_PORT``, ``OEE_RAY_TEMP_DIR``, ``OEE_HAPROXY_DIR`` and Ray's no-auth, no-telemetry
    switches. ``die_with_parent`` asks Linux to SIGTERM the engine when the thread that started it dies.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        base_env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        ray_dir: str | None = None,
        die_with_parent: bool = False,
        command: Sequence[str] | None = None,
    ) -> None:
        self.command = list(command) if command else [sys.executable, "-m", "runtime"]
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        # kept short (unix socket paths); the engine removes the HAProxy dir when it stops, discard() both
        self.ray_dir = ray_dir or tempfile.mkdtemp(prefix="oee-ray-", dir="/tmp")
        self.haproxy_dir = tempfile.mkdtemp(prefix="oee-hap-", dir="/tmp")
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="oee-engine-", suffix=".log")[1])
        self.die_with_parent = die_with_parent
        self.env = {
            **(os.environ if base_env is None else base_env),
            "OEE_PORT": str(self.port),
            "OEE_RAY_TEMP_DIR": self.ray_dir,
            "OEE_HAPROXY_DIR": self.haproxy_dir,
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self.forced = False  # SIGKILLed since the last spawn (kill(), or a stop that timed out)

    # -- start ------------------------------------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Spawn the engine and wait until it is healthy; on failure, kill its group and raise :class:`EngineStartError`."""
        self.spawn()
        try:
            self.wait_healthy(timeout_s)
        except BaseException:
            pid = self.proc.pid if self.proc is not None else None
            self.stop()
            if pid is not None:
                _kill_group(pid)  # whatever of its session outlived it
            raise

    def spawn(self) -> None:
        """Start ``command`` (default ``python -m runtime``) in a new session, its output appended to the log; returns at once."""
        Path(self.ray_dir).mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent if self.die_with_parent else None,
            )
        self.exit_code = None
        self.forced = False

    def healthy(self, timeout_s: float = 5.0) -> bool:
        """One ``GET /health``: True on a 200."""
        try:
            with _OPENER.open(f"{self.url}/health", timeout=timeout_s) as resp:
                return int(resp.status) == 200
        except (OSError, http.client.HTTPException, ValueError):  # refused, reset, timed out, an HTTP error
            return False

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Block until ``/health`` answers 200; raise :class:`EngineStartError` once the engine exits or the deadline passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            proc = self.proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise EngineStartError(f"engine exited with {code} before it was healthy (log {self.log_path})", code, self.log_tail())
            if self.healthy():
                return
            if time.monotonic() >= deadline:
                raise EngineStartError(f"engine not healthy after {timeout_s:.0f} s (log {self.log_path})", None, self.log_tail())
            time.sleep(0.5)

    # -- stop -------------------------------------------------------------------------------------

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM, as an operator would; SIGKILL the whole group if it does not stop in time. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                return self.exit_code
        self.exit_code = self.proc.returncode
        self.proc = None
        shutil.rmtree(self.haproxy_dir, ignore_errors=True)
        return self.exit_code

    def kill(self) -> None:
        """kill -9 the engine and every process of its session (Ray included)."""
        if self.proc is None:
            return
        self.forced = True
        _kill_group(self.proc.pid)
        self.proc.wait(15)
        self.exit_code = self.proc.returncode
        self.proc = None
        shutil.rmtree(self.haproxy_dir, ignore_errors=True)

    def discard(self, keep_log: bool = False) -> None:
        """Remove the engine's Ray temp dir, HAProxy dir and (unless kept) log once it is stopped for good."""
        shutil.rmtree(self.ray_dir, ignore_errors=True)
        shutil.rmtree(self.haproxy_dir, ignore_errors=True)
        if not keep_log:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
