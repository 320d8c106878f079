"""What every engine actor does at start-up and close: JSON logs, the GC settings of a long-lived
process, stores opened once on first use and closed by :meth:`EngineActor.close`, and its metrics
handed to the collector (:mod:`actors.metrics`) when it asks."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from engine.adapters.stores import Stores, open_stores
from engine.gc_tuning import tune_garbage_collection
from engine.instruments import REGISTRY
from engine.logs import setup_logging
from engine.metrics import Snapshot
from engine.settings import Settings

WARM_UP_S = 5.0


class EngineActor:
    def __init__(self, settings: Settings) -> None:
        setup_logging(settings.log_level)
        tune_garbage_collection()
        self._settings = settings
        self._stores: Stores | None = None
        self._opening = asyncio.Lock()

    async def stores(self, *, min_size: int = 1, max_size: int = 4) -> Stores:
        """The actor's stores, opened by the first caller (later callers wait for it)."""
        if self._stores is None:
            async with self._opening:
                if self._stores is None:
                    self._stores = await open_stores(self._settings, min_size=min_size, max_size=max_size)
        return self._stores

    def metrics_snapshot(self) -> Snapshot:
        """This process's metrics (the collector asks at each scrape)."""
        return REGISTRY.snapshot(type(self).__name__)

    async def close(self) -> None:
        if self._stores is not None:
            await self._stores.close()


async def warm_up(calls: list[Any], streams: list[Any], timeout_s: float = WARM_UP_S) -> None:
    """Await empty actor calls (object refs) and drain empty streamed ones (ref generators), so the
    first orders do not pay for setting up the connections between Ray workers. Failures and a
    timeout are ignored: an actor that is restarting is warmed by its first real call instead."""

    async def drain(generator: Any) -> None:
        async for ref in generator:
            await ref

    pending = asyncio.gather(*calls, *(drain(stream) for stream in streams), return_exceptions=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(pending, timeout_s)
