"""Idle memory of the engine's whole process tree: ``python -m loadtest.memory [--peer-pid PID]``.

Starts the engine (default settings, its own database, Redis prefix in db 12, Ray temp dir and port),
waits until it is healthy and ``--settle`` seconds more, then sums the proportional set size (PSS, from
``/proc/<pid>/smaps_rollup``: a shared page counts 1/n in each of the n processes that map it) and the
RSS over the engine process, its descendants and every process whose command line holds its Ray temp
dir. Prints one line per process, largest first, and the totals; with ``--peer-pid`` the same for that
process and its descendants (a running peer server), beside ours.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from pathlib import Path

import psutil

from loadtest.engine_run import EngineRun
from loadtest.monitor import ProcessWatch, label


def _rollup(pid: int) -> tuple[float, float]:
    """(PSS, RSS) in MB from ``/proc/<pid>/smaps_rollup``."""
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("Pss", "Rss"):
                fields[name] = float(rest.split()[0]) / 1024
    return fields.get("Pss", 0.0), fields.get("Rss", 0.0)


def tree_memory(procs: list[psutil.Process]) -> list[tuple[float, float, int, str]]:
    rows = []
    for proc in procs:
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(OSError, psutil.Error):
            pss, rss = _rollup(proc.pid)
            rows.append((pss, rss, proc.pid, label(proc)))
    return sorted(rows, reverse=True)


def report(name: str, rows: list[tuple[float, float, int, str]]) -> None:
    print(f"\n{name}:")
    for pss, rss, pid, what in rows:
        print(f"  {pss:7.1f} MB PSS {rss:7.1f} MB RSS  {pid:>7}  {what}")
    print(f"{name}: {sum(r[0] for r in rows):,.0f} MB PSS, {sum(r[1] for r in rows):,.0f} MB RSS summed, {len(rows)} processes")


def peer_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


async def main_async(args: argparse.Namespace) -> int:
    env: dict[str, str] = {}
    for item in args.engine_env:
        key, _, value = item.partition("=")
        env[key] = value
    engine = EngineRun("memory", env, Path(args.log))
    try:
        await engine.start()
        print(f"engine healthy after {engine.start_s:.1f} s; idle for {args.settle:g} s", flush=True)
        await asyncio.sleep(args.settle)
        assert engine.process.proc is not None
        watch = ProcessWatch(engine.process.proc.pid, engine.ray_dir)
        ours = await asyncio.to_thread(lambda: tree_memory(watch.processes()))
        report("ours", ours)
        if args.peer_pid:
            report("peer", await asyncio.to_thread(lambda: tree_memory(peer_tree(args.peer_pid))))
    finally:
        await engine.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-pid", type=int, help="a running peer server's process id")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds idle after /health before measuring")
    parser.add_argument("--engine-env", action="append", default=[], metavar="KEY=VALUE", help="extra settings for our engine")
    parser.add_argument("--log", default="/tmp/oee-memory.log")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
