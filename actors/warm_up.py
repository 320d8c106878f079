"""Warming the actor-to-actor paths orders take, at start-up.

The first call between two Ray workers sets up their connection (and a streamed call its streaming
machinery), which the first orders after start-up would otherwise wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

WARM_UP_S = 5.0


async def warm_up(calls: list[Any], streams: list[Any], timeout_s: float = WARM_UP_S) -> None:
    """Await empty actor calls (object refs) and drain empty streamed ones (ref generators). Failures
    and a timeout are ignored: an actor that is restarting is warmed by its first real call instead."""

    async def drain(generator: Any) -> None:
        async for ref in generator:
            await ref

    pending = asyncio.gather(*calls, *(drain(stream) for stream in streams), return_exceptions=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(pending, timeout_s)
