"""Protected mode, as a user meets it: ``python -m runtime`` refuses a non-loopback bind without
OEE_ADMIN_KEY (and a weak key), before it starts anything, with a message that says what to set."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from runtime.process import ROOT


def run(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OEE_")}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "runtime"], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - started


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "engine.example.com"])
def test_a_non_loopback_bind_without_an_admin_key_is_refused(host: str) -> None:
    done, took = run({"OEE_HOST": host, "OEE_DATA_DIR": "/nonexistent/never-created"})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "OEE_ADMIN_KEY" in done.stderr and f"OEE_HOST={host}" in done.stderr
    assert "ray" not in done.stdout.lower() and not os.path.exists("/nonexistent/never-created")  # nothing was started
    print(f"\nOEE_HOST={host} without OEE_ADMIN_KEY: exit 2 in {took:.1f} s: {done.stderr.strip()[:120]}...")


def test_a_weak_admin_key_is_refused_without_echoing_it() -> None:
    done, _ = run({"OEE_HOST": "0.0.0.0", "OEE_ADMIN_KEY": "hunter2-short"})
    assert done.returncode == 2 and "at least 32" in done.stderr and "hunter2" not in done.stderr + done.stdout
