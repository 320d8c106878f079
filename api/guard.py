"""The replica's side of accounts and limits: who is calling, what each account may do, the trading
state, admission, and the market view the risk checks price against.

Keys and limits are read from PostgreSQL and cached here; the cache is trusted only while this replica
hears the control channel (:mod:`engine.adapters.control`), on which every revocation and change is
announced, and the replica that makes a change drops its own copy before it answers. So a revoked key
is refused at once on this replica, and on the others as soon as they hear of it (a Redis round trip);
a submission is refused even before that, by the admission script's revoked set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from api.market import MarketMarks
from engine.accounts import (
    ADMIN_PRINCIPAL,
    LOCAL_PRINCIPAL,
    AccountLimits,
    ApiKey,
    Principal,
    Scope,
    admin_key_matches,
    new_key,
    split_key,
)
from engine.adapters.accounts_store import KeyStore, LimitStore
from engine.adapters.admission_store import AdmissionStore
from engine.adapters.control import KEY_REVOKED, LIMITS_CHANGED, TRADING_CHANGED, ControlChannel, TrustedCache
from engine.adapters.stores import Stores
from engine.adapters.trading_store import TradingStateStore
from engine.admission import Admission, Verdict
from engine.errors import StoreUnavailable
from engine.models import VenueName
from engine.settings import Settings, reveal
from engine.trading_state import ScopeState, TradingState, TradingStates

log = logging.getLogger("api.guard")

STATE_CACHE_S = 1.0
"""The trading state a replica checks before pricing an order is at most this old (the admission script
checks the current one; this only answers a halted submission before its risk checks)."""
STREAM_REFRESH_S = 30.0


class AuthFailed(Exception):
    """The caller is not who it must be: 401 (no or bad key) or 403 (a key without the scope)."""

    def __init__(self, status: int, message: str, presented: bool = False) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.presented = presented


class Guard:
    def __init__(
        self, settings: Settings, stores: Stores, venues: dict[VenueName, Any], pairs: Callable[[], frozenset[tuple[str, str]]]
    ) -> None:
        self.settings = settings
        self.admin_key = reveal(settings.admin_key)
        self.keys = KeyStore(stores.pool)
        self.limit_store = LimitStore(stores.pool)
        self.admission = AdmissionStore(stores.redis, settings.redis_prefix)
        self.trading = TradingStateStore(stores.pool, stores.redis, settings.redis_prefix)
        self.control = ControlChannel(stores.redis, settings.redis_prefix)
        self.control.on_message(self._heard)
        self._keys: TrustedCache[ApiKey | None] = TrustedCache(self.control, settings.key_cache_s)
        self._limits: TrustedCache[AccountLimits] = TrustedCache(self.control, settings.key_cache_s)
        self._states: tuple[float, TradingStates] | None = None
        self.market = MarketMarks(venues, pairs)
        self.default_limits = settings.account_limits()
        self.streams: dict[str, str] = {}  # stream id -> account, on this replica
        self._refresher: asyncio.Task[None] | None = None

    @property
    def protected(self) -> bool:
        """With ``OEE_ADMIN_KEY`` set every call but health and docs needs a key; without it, open local mode."""
        return self.admin_key is not None

    def start(self) -> None:
        self.control.start()
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_streams())

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        await self.control.stop()

    def _heard(self, kind: str, value: str) -> None:
        if kind == KEY_REVOKED:
            self._keys.forget(value)
        elif kind == LIMITS_CHANGED:
            self._limits.forget(value)
        elif kind == TRADING_CHANGED:
            self._states = None

    # -- who is calling ------------------------------------------------------------------------

    async def authenticate(self, token: str | None) -> Principal:
        """The caller of a request presenting ``token`` (None: no key); raises :class:`AuthFailed` (401)."""
        if token is None:
            if self.protected:
                raise AuthFailed(401, "an API key is required: send Authorization: Bearer <key>")
            return LOCAL_PRINCIPAL
        if self.admin_key is not None and admin_key_matches(token, self.admin_key):
            return ADMIN_PRINCIPAL
        parts = split_key(token)
        if parts is None:
            raise AuthFailed(401, "the API key is not valid", presented=True)
        key_id, secret = parts
        found, key = self._keys.get(key_id)
        if not found:
            token_before = self._keys.token()
            key = await self.keys.get(key_id)
            self._keys.put(key_id, key, token_before)
        if key is None or not key.verify(secret):
            raise AuthFailed(401, "the API key is not valid (unknown or revoked)", presented=True)
        return key.principal()

    # -- keys ----------------------------------------------------------------------------------

    async def create_key(self, account: str, scopes: frozenset[Scope], created_by: str) -> tuple[ApiKey, str]:
        record, plaintext = new_key(account, scopes, time.time() * 1000, created_by)
        await self.keys.create(record)
        return record, plaintext

    async def revoke_key(self, key_id: str, revoked_by: str) -> ApiKey | None:
        """Revoke in PostgreSQL, refuse it in the admission script, drop it here, then tell every replica."""
        revoked = await self.keys.revoke(key_id, revoked_by)
        if revoked is None:
            return None
        self._keys.forget(key_id)
        await self.admission.revoke(key_id)
        try:
            await self.control.publish(KEY_REVOKED, key_id)
        except StoreUnavailable:  # PostgreSQL has it; other replicas' caches expire (OEE_KEY_CACHE_S)
            log.warning("could not announce a revoked key", extra={"key_id": key_id})
        log.warning("api key revoked", extra={"key_id": key_id, "account": revoked.account, "revoked_by": revoked_by})
        return revoked

    # -- limits --------------------------------------------------------------------------------

    async def limits_for(self, account: str) -> AccountLimits:
        found, limits = self._limits.get(account)
        if found and limits is not None:
            return limits
        token_before = self._limits.token()
        limits = self.default_limits.with_overrides(await self.limit_store.get(account))
        self._limits.put(account, limits, token_before)
        return limits

    async def set_limits(self, account: str, overrides: dict[str, Any], changed_by: str) -> AccountLimits:
        await self.limit_store.put(account, overrides, changed_by)
        self._limits.forget(account)
        with contextlib.suppress(StoreUnavailable):
            await self.control.publish(LIMITS_CHANGED, account)
        log.warning("account limits changed", extra={"account": account, "limits": overrides, "changed_by": changed_by})
        return self.default_limits.with_overrides(overrides)

    # -- trading state -------------------------------------------------------------------------

    async def trading_states(self) -> TradingStates:
        now = time.monotonic()
        if self._states is not None and now - self._states[0] < STATE_CACHE_S:
            return self._states[1]
        states = await self.trading.states()
        self._states = (now, states)
        return states

    async def change_trading(self, scope: str, state: TradingState, reason: str, changed_by: str) -> ScopeState:
        changed = await self.trading.change(scope, state, reason, changed_by)
        self._states = None
        with contextlib.suppress(StoreUnavailable):
            await self.control.publish(TRADING_CHANGED, scope)
        return changed

    # -- admission -----------------------------------------------------------------------------

    async def admit(self, who: Principal, scope: str, limits: AccountLimits, order_id: str, order_usd: float) -> Admission:
        """The admission script's verdict; a Redis that lost the trading state gets it back first."""
        for _ in range(2):
            admission = await self.admission.admit(
                account=who.account,
                key_id=who.key_id,
                scope=scope,
                limits=limits,
                max_queued=self.settings.max_queued_orders,
                order_id=order_id,
                order_usd=order_usd,
            )
            if admission.verdict is not Verdict.STATE_UNKNOWN:
                return admission
            await self.trading.restore_mirror()
        return admission

    # -- streams -------------------------------------------------------------------------------

    async def _refresh_streams(self) -> None:
        """Keep this replica's streams counted in Redis (a replica that dies stops, and they expire)."""
        while True:
            await asyncio.sleep(STREAM_REFRESH_S)
            try:
                await self.admission.refresh_streams([(account, stream_id) for stream_id, account in self.streams.items()])
            except StoreUnavailable as exc:
                log.warning("could not refresh stream counts", extra={"error": str(exc)})
