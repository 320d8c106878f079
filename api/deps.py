"""What the routes depend on, per Serve replica: the settings, the stores, the engine's actor handles,
the hub subscriptions, and the pairs the venues trade. Routes take it as ``ReadyEdge`` (FastAPI
``Depends``); the deployment (``serve_app.Ingress``) installs the replica's :class:`Edge`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import HTTPConnection

from api.feed import EventFeed
from api.guard import Guard
from api.subscriptions import ReplicaSubscriptions
from api.wallets import Wallets, wallets_for
from engine.adapters.postgres import PostgresJournal
from engine.adapters.redis_store import RedisOrders
from engine.adapters.stores import Stores, open_stores, urls
from engine.balance_view import BalanceView
from engine.intake import OrderIntake
from engine.models import VenueName
from engine.settings import Settings
from engine.tokens import mint_of

PAIRS_REFRESH_S = 1.0
"""An order for a pair no venue was known to trade asks the venues again, at most this often."""


class Edge:
    def __init__(self, settings: Settings, hub: Any, venues: dict[VenueName, Any], chain: Any = None) -> None:
        self.settings = settings
        self.hub = hub
        self.venues = venues
        self._chain = chain
        self._wallets: Wallets | None = None
        self._balances: BalanceView | None = None
        self.subscriptions = ReplicaSubscriptions(hub)
        self.tradable: frozenset[tuple[str, str]] = frozenset()
        self._pairs_asked_at = -PAIRS_REFRESH_S
        self._asking: asyncio.Future[bool] | None = None
        self._stores: Stores | None = None
        self._lock = asyncio.Lock()
        self._warming: asyncio.Task[None] | None = None
        self._prefetch: asyncio.Future[bool] | None = None
        self._feed: EventFeed | None = None

    @property
    def stores(self) -> Stores:
        assert self._stores is not None, "await ready() first"
        return self._stores

    @property
    def wallets(self) -> Wallets:
        """Each account's wallet on the engine's chain (found on first use)."""
        if self._wallets is None:
            self._wallets = wallets_for(self.settings, self._chain)
        return self._wallets

    @property
    def balances(self) -> BalanceView:
        """The replica's view of wallet balances for the funds check at intake."""
        if self._balances is None:
            wallets = self.wallets

            async def read(account: str, token: str) -> int:
                mint = mint_of(token)
                return (await wallets.balances(account, [token])).get(mint, 0)

            self._balances = BalanceView(read)
        return self._balances

    @property
    def journal(self) -> PostgresJournal:
        return self.stores.journal

    @property
    def orders(self) -> RedisOrders:
        return self.stores.orders

    async def ready(self) -> Edge:
        if self._stores is None:
            async with self._lock:
                if self._stores is None:
                    # no connection is made here, so a database that is down answers 503 per request
                    stores = await open_stores(self.settings, min_size=0, max_size=12)
                    # four batched writes at once: at low concurrency an order rarely waits for a batch slot
                    max_age = self.settings.market_max_age_s
                    self.intake = OrderIntake(stores.journal, stores.orders, max_in_flight=4, market_max_age_s=max_age)
                    self.guard = Guard(self.settings, stores, self.venues, lambda: self.tradable)
                    self.guard.start()
                    self.subscriptions.start()
                    self._warming = asyncio.create_task(self._warm_pool(stores))
                    self._stores = stores
                    self._prefetch = asyncio.ensure_future(self.refresh_pairs())  # the first orders find the pairs known
        return self

    async def _warm_pool(self, stores: Stores, connections: int = 4) -> None:
        """Open a few connections in the background: one opened on demand costs its request tens of ms.
        A database that is down is not waited for here (requests answer 503 on their own)."""

        async def hold() -> None:
            async with stores.pool.acquire():
                await asyncio.sleep(0.05)

        with contextlib.suppress(Exception):
            await asyncio.gather(*(hold() for _ in range(connections)))

    async def refresh_pairs(self, force: bool = False) -> bool:
        """Ask every venue which pairs it trades; True if the answer was new. Callers during a question
        share it; after one, the next waits :data:`PAIRS_REFRESH_S` unless ``force``."""
        if self._asking is not None:
            return await asyncio.shield(self._asking)
        if not force and time.monotonic() - self._pairs_asked_at < PAIRS_REFRESH_S:
            return False
        self._asking = asyncio.ensure_future(self._ask_venues())
        try:
            return await asyncio.shield(self._asking)
        finally:
            self._asking = None
            self._pairs_asked_at = time.monotonic()

    async def _ask_venues(self) -> bool:
        answers = await asyncio.gather(*(handle.pairs.remote() for handle in self.venues.values()), return_exceptions=True)
        pairs = frozenset(pair for answer in answers if isinstance(answer, frozenset) for pair in answer)
        if any(not isinstance(answer, frozenset) for answer in answers):
            pairs |= self.tradable  # a venue that did not answer keeps what it traded before
        changed = pairs != self.tradable
        self.tradable = pairs
        return changed

    async def event_feed(self) -> EventFeed:
        """The replica's reader of the event log, started by the first account stream."""
        if self._feed is None:
            database_url, _ = urls(self.settings)
            self._feed = EventFeed(self.stores.pool, database_url)
        await self._feed.start()
        return self._feed

    async def close(self) -> None:
        if self._balances is not None:
            self._balances.close()
        if self._stores is not None:
            await self.guard.close()
        if self._feed is not None:
            await self._feed.stop()
        await self.subscriptions.stop()
        if self._stores is not None:
            await self._stores.close()


_installed: Edge | None = None


def install(replica_edge: Edge) -> None:
    """Make ``replica_edge`` the one the routes use (one per replica process). Serve serves a copy
    of the FastAPI app, so the edge cannot live on the app's ``state``."""
    global _installed
    _installed = replica_edge


def edge(_: HTTPConnection | None = None) -> Edge:
    if _installed is None:
        raise RuntimeError("no Edge installed in this process (serve_app.Ingress installs it)")
    return _installed


async def ready_edge() -> Edge:
    return await edge().ready()


ReadyEdge = Annotated[Edge, Depends(ready_edge)]
"""The replica's :class:`Edge`, its stores open."""


def serve_request_key() -> str | None:
    """Serve's request id as an implicit idempotency key: a request the proxy retries keeps its id, so a
    retry after the order was stored returns that order instead of creating a second one."""
    from ray.serve.context import _get_serve_request_context

    request_id = _get_serve_request_context().request_id
    return f"serve-request:{request_id}" if request_id else None
