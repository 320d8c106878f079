"""Start and stop the engine as a subprocess, the way a user does, for end-to-end and fault tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from runtime.embedded import free_port
from tests.conftest import ROOT, TestStores


class EngineProcess:
    def __init__(self, stores: TestStores, env: dict[str, str], port: int | None = None) -> None:
        self.stores = stores
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.ray_dir = tempfile.mkdtemp(prefix="oee-e2e-ray-", dir="/tmp")
        # the engine removes it when it stops; after a kill -9, stop()/kill() do
        self.haproxy_dir = tempfile.mkdtemp(prefix="oee-hap-", dir="/tmp")
        self.log_path = Path(tempfile.mkstemp(prefix="oee-engine-", suffix=".log")[1])
        self.env = {
            **os.environ,
            "OEE_PORT": str(self.port),
            "OEE_REDIS_URL": stores.redis_url,
            "OEE_REDIS_PREFIX": stores.redis_prefix,
            "OEE_DATABASE_URL": stores.database_url,
            "OEE_RAY_NUM_CPUS": "2",
            "OEE_RAY_TEMP_DIR": self.ray_dir,
            "OEE_HAPROXY_DIR": self.haproxy_dir,
            "OEE_LOG_LEVEL": "INFO",
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"engine not healthy after {timeout_s}s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM, as an operator would; SIGKILL the whole group if it does not stop in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        code = self.proc.returncode
        self.proc = None
        shutil.rmtree(self.haproxy_dir, ignore_errors=True)
        return code

    def kill(self) -> None:
        """kill -9 the engine and every process of its session (Ray included)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None
        shutil.rmtree(self.haproxy_dir, ignore_errors=True)

    def discard(self) -> None:
        """Remove the engine's Ray temp dir, HAProxy dir and log once it is stopped for good."""
        shutil.rmtree(self.ray_dir, ignore_errors=True)
        shutil.rmtree(self.haproxy_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.log_path.unlink()

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
