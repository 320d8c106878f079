"""The run's engines: each phase's engine started when needed (or all at once) and stopped when its phases are done."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from loadtest.bench.common import log
from loadtest.engine_run import EngineRun


class Engines:
    """The run's engines, started and stopped one after another, or overlapped (``--overlap``, tiny's default).

    Overlapped, every engine starts at once and each is stopped in the background while the next phase
    runs: a shorter run, but each phase shares the CPU with idle or stopping engines, so its figures mean
    even less than usual.
    """

    def __init__(self, args: argparse.Namespace, stamp: str, plan: list[tuple[str, dict[str, str]]]) -> None:
        self.overlap = bool(args.overlap)
        self.runs = {
            name: EngineRun(
                name,
                env,
                args.out / f"bench-{stamp}-engine-{name}.log",
                extra_env=args.engine_env,
                pg_connection_limit=args.pg_connection_limit,
                stores=args.stores,
            )
            for name, env in plan
        }
        self._starts: dict[str, asyncio.Task[EngineRun]] = {}
        self._stops: list[asyncio.Task[None]] = []
        if self.overlap:
            for name in self.runs:
                self._starts[name] = asyncio.create_task(self._start(name))

    async def _start(self, name: str) -> EngineRun:
        engine = self.runs[name]
        shown = " ".join(f"{k}={v}" for k, v in engine.settings_env.items()) or "defaults"
        log(f"engine {name}: starting on port {engine.port} ({shown})")
        await engine.start()
        log(f"engine {name}: healthy after {engine.start_s:.1f} s")
        return engine

    async def get(self, name: str) -> EngineRun:
        if name not in self._starts:
            self._starts[name] = asyncio.create_task(self._start(name))
        return await self._starts[name]

    async def release(self, name: str) -> None:
        if self.overlap:
            self._stops.append(asyncio.create_task(self._stop(self.runs[name])))
        else:
            await self._stop(self.runs[name])

    @staticmethod
    async def _stop(engine: EngineRun) -> None:
        if engine.stopped:
            return
        log(f"engine {engine.name}: SIGTERM")
        await engine.stop()
        left = f"; LEFT BEHIND (killed): {engine.left_after_sigterm}" if engine.left_after_sigterm else "; no process left"
        log(f"engine {engine.name}: exited {engine.exit_code} after {engine.stop_s:.1f} s{left}")

    async def close(self) -> None:
        """Stop everything still running (after an error too), and wait for the background stops."""
        for task in self._starts.values():
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await asyncio.gather(*self._stops, return_exceptions=True)
        for engine in self.runs.values():
            with contextlib.suppress(Exception):
                await self._stop(engine)

    def started(self) -> list[EngineRun]:
        """The engines whose process was started (whether or not it became healthy)."""
        return [e for e in self.runs.values() if e.started]
