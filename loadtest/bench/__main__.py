"""``python -m loadtest.bench``: the command line (modes, output directory, which engines, experiments)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from loadtest import bench as package
from loadtest.bench.common import log
from loadtest.bench.modes import ENGINES
from loadtest.bench.run import bench
from loadtest.engine_run import Stores
from runtime.embedded import Dependencies, scratch_servers
from runtime.process import ROOT


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench", description=package.__doc__.split("\n\n")[0] if package.__doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="short runs: 3 s intake, 5 s capacity, 100 subscribers")
    parser.add_argument("--tiny", action="store_true", help="smoke-test runs: 1 s intake, 2 s capacity, 20 subscribers")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtest" / "results", help="directory for JSON, CSV and logs")
    parser.add_argument("--subscribers", type=int, default=0, help="fan-out subscribers (default: 2000, quick 100, tiny 20)")
    parser.add_argument("--per-order", type=int, default=20, help="fan-out subscribers per order")
    parser.add_argument("--capacity-concurrency", type=int, default=200, help="OEE_MAX_CONCURRENT_ORDERS of the capacity engine")
    parser.add_argument("--ceiling-path", default="/docs", help="the no-op GET used as the intake ceiling")
    parser.add_argument(
        "--overlap",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start all engines at once and stop each in the background (default: only with --tiny; figures suffer)",
    )
    parser.add_argument(
        "--pg-connection-limit",
        type=int,
        default=50,
        help="CONNECTION LIMIT of each engine's own PostgreSQL role (the server is shared); 0: connect as postgres, no limit",
    )
    parser.add_argument("--embedded", action="store_true", help="use PostgreSQL and Redis servers of its own even if the machine's listen")
    parser.add_argument("--profile", action="store_true", help="py-spy record the main actors during intake c=50 and capacity")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(ENGINES),
        default=[],
        help="run only this engine's phases (repeatable; default-timings = overhead and fan-out); the report lacks the rest",
    )
    parser.add_argument(
        "--engine-env", action="append", default=[], metavar="KEY=VALUE", help="extra environment for every engine (experiments)"
    )
    args = parser.parse_args(argv)
    args.engine_env = dict(item.split("=", 1) for item in args.engine_env)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.suppress(ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    try:
        import uvloop

        runner: Callable[..., int] = uvloop.run
    except ImportError:
        runner = asyncio.run

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # clean up (engines, databases, keys) on SIGTERM too
        return await bench(args)

    deps = Dependencies(redis_url="", database_url="")
    scratch = Path(tempfile.mkdtemp(prefix="oee-bench-stores-"))
    try:
        args.stores = resolve_stores(deps, scratch, args.embedded)
        return runner(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; engines stopped and stores cleaned", file=sys.stderr)
        return 130
    finally:
        deps.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def resolve_stores(deps: Dependencies, scratch: Path, embedded: bool) -> Stores:
    """The machine's PostgreSQL and Redis where they listen, else embedded ones (stopped by ``deps.stop``)."""
    pg_admin, redis_base = scratch_servers(scratch, deps, embedded)
    if deps.embedded:
        log(f"embedded {' and '.join(deps.embedded)} started for this run")
    return Stores(pg_admin, f"{redis_base}/12")


if __name__ == "__main__":
    sys.exit(main())
