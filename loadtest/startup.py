"""Start-up and stop, as an operator sees them: ``python -m loadtest.startup [--runs 5] [--peer-cmd CMD --peer-url URL]``.

Each run starts ``bash scripts/run`` (installed: the bootstrap finds its stamp and returns at once) in a
session of its own with its own database, Redis prefix (db 12), Ray temp dir and port, times it to the
first ``/health`` 200, then sends SIGINT to its process group (what Ctrl-C in a terminal does) and times
it to a clean exit: exit status 0 and no process of the engine left (its raylet included). It prints
each run with the phases the engine logged for its start and its stop, and the medians. With
``--compare-env`` it also times ours with those settings ("ours+"), alternating with the default. With
``--peer-cmd`` it times that command (run by ``bash -c`` in its own session, stopped the same way) to a
200 from ``--peer-url``/health, alternating with ours.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

from loadtest.bench.modes import ACCOUNT_LIFTED
from loadtest.engine_run import EngineRun

POLL_S = 0.05


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> float:
    t0 = time.perf_counter()
    while not _healthy(url):
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before it was healthy")
        if time.perf_counter() - t0 > timeout_s:
            raise RuntimeError(f"not healthy after {timeout_s:.0f} s")
        time.sleep(POLL_S)
    return time.perf_counter() - t0


def _interrupt(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[float, int | None]:
    """SIGINT to the process group (Ctrl-C); seconds to exit and the exit status (None: killed after the timeout)."""
    t0 = time.perf_counter()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        code: int | None = proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)
        code = None
    return time.perf_counter() - t0, code


async def ours_once(index: int, timeout_s: float, log_dir: Path, extra_env: dict[str, str] | None = None) -> dict[str, object]:
    env = {**ACCOUNT_LIFTED, **(extra_env or {})}
    engine = EngineRun(f"startup-{index}", env, log_dir / f"oee-startup-{index}.log", command=["bash", "scripts/run"])
    try:
        await engine._create_stores()
        engine.process.spawn()
        proc = engine.process.proc
        assert proc is not None
        engine.started = True
        from loadtest.monitor import ProcessWatch

        engine.watch = ProcessWatch(proc.pid, engine.ray_dir)
        up = await asyncio.to_thread(_wait_healthy, engine.url, proc, timeout_s)
        processes = len(await asyncio.to_thread(engine.watch.processes))
        down, code = await asyncio.to_thread(_interrupt, proc, timeout_s)
        engine.process.proc = None
        left = await asyncio.to_thread(engine.watch.known_alive)
        for p in left:
            with contextlib.suppress(Exception):
                p.kill()
        phases = _logged_phases(engine.log_path)
        return {"up_s": up, "down_s": down, "exit": code, "left": len(left), "processes": processes, **phases}
    finally:
        await engine.stop()


def _logged_phases(log_path: Path) -> dict[str, object]:
    """The engine's own account of its start and stop: the phases of its log lines ``start-up phases``
    and ``engine stopped`` (seconds by phase), where it wrote them."""
    found: dict[str, object] = {}
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("msg") == "start-up phases":
                    found["start_phases"] = record.get("phases_s")
                elif record.get("msg") == "engine stopped" and "phases_s" in record:
                    found["stop_phases"] = record.get("phases_s")
    return found


def _phases(r: dict[str, object]) -> str:
    parts = [
        f"\n      {name}: " + ", ".join(f"{phase} {seconds:.2f}" for phase, seconds in value.items())
        for name, value in (("start", r.get("start_phases")), ("stop", r.get("stop_phases")))
        if isinstance(value, dict)
    ]
    return "".join(parts)


def peer_once(cmd: str, url: str, timeout_s: float) -> dict[str, object]:
    proc = subprocess.Popen(["bash", "-c", cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        up = _wait_healthy(url, proc, timeout_s)
        down, code = _interrupt(proc, timeout_s)
        return {"up_s": up, "down_s": down, "exit": code, "left": 0, "processes": 1}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)


def _row(name: str, i: int, r: dict[str, object]) -> str:
    return (
        f"  {name:<5} run {i}: healthy after {r['up_s']:.2f} s, Ctrl-C to exit {r['down_s']:.2f} s"
        f" (status {r['exit']}, {r['left']} left, {r['processes']} processes)" + _phases(r)
    )


async def main_async(args: argparse.Namespace) -> int:
    results: dict[str, list[dict[str, object]]] = {"ours": [], "ours+": [], "peer": []}
    log_dir = Path(args.log_dir)
    variant = dict(item.partition("=")[::2] for item in args.compare_env)
    for i in range(1, args.runs + 1):
        r = await ours_once(i, args.timeout, log_dir)
        results["ours"].append(r)
        print(_row("ours", i, r), flush=True)
        if variant:
            r = await ours_once(i, args.timeout, log_dir, variant)
            results["ours+"].append(r)
            print(_row("ours+", i, r), flush=True)
        if args.peer_cmd:
            r = await asyncio.to_thread(peer_once, args.peer_cmd, args.peer_url.rstrip("/"), args.timeout)
            results["peer"].append(r)
            print(_row("peer", i, r), flush=True)
    for name, runs in results.items():
        if runs:
            up = statistics.median(float(str(r["up_s"])) for r in runs)
            down = statistics.median(float(str(r["down_s"])) for r in runs)
            clean = all(r["exit"] == 0 and r["left"] == 0 for r in runs)
            print(f"{name}: median start-up {up:.2f} s, median Ctrl-C to exit {down:.2f} s, every stop clean: {clean}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--peer-cmd", help="a shell command that starts the peer in the foreground")
    parser.add_argument("--peer-url", default="http://127.0.0.1:3101")
    parser.add_argument("--log-dir", default="/tmp")
    parser.add_argument(
        "--compare-env", action="append", default=[], metavar="KEY=VALUE", help="also time ours with these settings (ours+), alternating"
    )
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
