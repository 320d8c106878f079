"""Actor handles seen as the core's ports: a quoter as a :class:`engine.ports.Venue`, the hub as an
:class:`engine.ports.EventSink`, the price watcher as an :class:`engine.ports.Watcher` (and :class:`engine.ports.TriggerSource`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

from engine import wire
from engine.batching import Coalescer, Pacer
from engine.errors import TransientVenueError, VenueError
from engine.instruments import VENUE_UNREACHABLE
from engine.lease import UNFENCED
from engine.models import DexQuote, Order, OrderEvent, VenueName
from engine.ports import PoolView
from engine.settlement import LegTerms
from engine.watching import Trigger

UNAVAILABLE_WAIT_S = 15.0
"""How long a read (quote, snapshot, pairs) waits for a quoter that is restarting, e.g. on
another node after its node was lost, before it counts as a failed attempt."""


class VenueClient:
    """A quoter actor seen as a :class:`engine.ports.Venue`. Lost actors become transient venue errors.

    Reads are idempotent, so they are retried while the actor restarts; settling a leg is not (a lost
    answer leaves the run without a signed transaction: it routes again).
    """

    def __init__(self, name: VenueName, handle: Any, window_s: float = 0.0) -> None:
        self.name = name
        self.handle = handle
        # Reads made in the same loop step (a routing's quote and snapshot, other orders' reads), or
        # within one window under load, share one actor call; none waits for another call to finish.
        self._reads: Coalescer[tuple[str, tuple[Any, ...]], Any] = Coalescer(
            self._read_many, max_batch=256, max_in_flight=10_000, pacer=Pacer(window_s)
        )
        # Legs asked together share one call whose answers stream back as each is agreed; co-signatures
        # asked together share one call too.
        self._legs: Coalescer[tuple[str, DexQuote, float], LegTerms] = Coalescer(
            stream=self._commit_many, max_batch=256, max_in_flight=10_000, pacer=Pacer(window_s)
        )
        self._cosigns: Coalescer[tuple[str, bytes], bytes] = Coalescer(
            self._cosign_many, max_batch=256, max_in_flight=10_000, pacer=Pacer(window_s)
        )
        self._signed_legs: Coalescer[tuple[str, DexQuote, float, str, str], tuple[LegTerms, bytes]] = Coalescer(
            stream=self._commit_signed_many, max_batch=256, max_in_flight=10_000, pacer=Pacer(window_s)
        )

    def batching(self) -> dict[str, Coalescer[Any, Any]]:
        return {"reads": self._reads, "legs": self._legs, "cosigns": self._cosigns, "signed_legs": self._signed_legs}

    async def _read_many(self, requests: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        results: list[Any] = await self._call(self.handle.read_many.remote(requests))
        return results

    async def _read(self, method: str, *args: Any) -> Any:
        deadline = asyncio.get_running_loop().time() + UNAVAILABLE_WAIT_S
        while True:
            try:
                return await self._reads.submit((method, args))
            except TransientVenueError as exc:
                if not isinstance(exc.__cause__, RayActorError | ActorUnavailableError):
                    raise
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.5)

    @contextlib.contextmanager
    def _venue_errors(self) -> Iterator[None]:
        """A venue's own error as itself; a failed or lost actor as a transient venue error."""
        try:
            yield
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, VenueError):
                raise cause from None
            raise TransientVenueError(self.name, f"venue call failed: {type(cause).__name__}: {cause}") from exc
        except (RayActorError, ActorUnavailableError) as exc:
            VENUE_UNREACHABLE.inc(self.name)
            raise TransientVenueError(self.name, f"venue unreachable ({type(exc).__name__})") from exc

    async def _call(self, ref: Any) -> Any:
        with self._venue_errors():
            return await ref

    async def quote(self, token_in: str, token_out: str, amount: float) -> DexQuote:
        result: DexQuote = await self._read("quote", token_in, token_out, amount)
        return result

    async def snapshot(self, token_in: str, token_out: str) -> PoolView | None:
        result: PoolView | None = await self._read("snapshot", token_in, token_out)
        return result

    async def commit_leg(self, order_id: str, quote: DexQuote, min_amount_out: float) -> LegTerms:
        """Not retried: a lost answer means the run signs nothing and routes again."""
        return await self._legs.submit((order_id, quote, min_amount_out))

    async def _commit_many(self, requests: list[tuple[str, DexQuote, float]]) -> AsyncIterator[Sequence[tuple[int, Any]]]:
        with self._venue_errors():
            async for ref in self.handle.commit_many.remote(requests):
                yield await ref

    async def cosign(self, order_id: str, message: bytes) -> bytes:
        return await self._cosigns.submit((order_id, message))

    async def commit_signed(
        self, order_id: str, quote: DexQuote, min_amount_out: float, trader: str, blockhash: str
    ) -> tuple[LegTerms, bytes]:
        """A one-leg order's terms and the venue's co-signature of its transaction, in one call (not retried,
        as :meth:`commit_leg`)."""
        return await self._signed_legs.submit((order_id, quote, min_amount_out, trader, blockhash))

    async def _commit_signed_many(self, requests: list[tuple[str, DexQuote, float, str, str]]) -> AsyncIterator[Sequence[tuple[int, Any]]]:
        with self._venue_errors():
            async for ref in self.handle.commit_signed_many.remote(requests):
                yield await ref

    async def _cosign_many(self, requests: list[tuple[str, bytes]]) -> list[Any]:
        results: list[Any] = await self._call(self.handle.cosign_many.remote(requests))
        return results

    async def pairs(self) -> frozenset[tuple[str, str]]:
        result: frozenset[tuple[str, str]] = await self._read("pairs")
        return result

    async def close(self) -> None:
        """The actor owns the venue: nothing to release here."""


class WatcherClient:
    """The PriceWatcher actor seen as an :class:`engine.ports.Watcher`."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def watch(self, order: Order) -> None:
        await self.handle.watch.remote(order)

    async def unwatch(self, order_id: str) -> None:
        await self.handle.unwatch.remote(order_id)

    async def trigger(self, order_id: str) -> Trigger | None:
        """What fired the order (an :class:`engine.ports.TriggerSource`), or None."""
        result: Trigger | None = await self.handle.trigger.remote(order_id)
        return result


class HubSink:
    """The StatusHub actor seen as an :class:`engine.ports.EventSink`. Events published while a
    call is under way go together in the next (one actor call for many orders' events)."""

    def __init__(self, handle: Any, window_s: float = 0.0) -> None:
        self.handle = handle
        self._batches: Coalescer[tuple[int, dict[str, Any]], None] = Coalescer(
            self._publish_many, max_batch=512, max_in_flight=2, pacer=Pacer(window_s)
        )

    def batching(self) -> dict[str, Coalescer[Any, Any]]:
        return {"publish": self._batches}

    async def publish(self, event: OrderEvent, epoch: int | None = None) -> None:
        """The run's ``epoch`` goes beside the message: the hub drops events of runs older than the
        newest it has seen for the order (a zombie's)."""
        await self._batches.submit((UNFENCED if epoch is None else epoch, wire.status_message(event)))

    async def _publish_many(self, items: list[tuple[int, dict[str, Any]]]) -> list[None]:
        await self.handle.publish_runs.remote(items)
        return [None] * len(items)
