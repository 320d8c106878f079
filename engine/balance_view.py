"""A replica's view of wallet balances for the funds check at intake, so that an order the wallet can
plainly pay costs no chain round trip on the request path.

Per ``(account, token)`` the view holds the balance last read from the chain (base units) and what this
replica admitted against it since that read. An order passes on the view when the view is at most
``max_age_s`` old and its balance, less what was admitted since, still covers the order; the view is
read again in the background once it is ``refresh_s`` old. Anything else (no view, an old one, or one
that says the wallet cannot pay) asks the chain and decides on its answer, so a refusal is always the
chain's current word: the order is refused when the wallet holds less than the order sells.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.clock import Clock, SystemClock

log = logging.getLogger("engine.balance_view")

Read = Callable[[str, str], Awaitable[int]]
"""``(account, token) -> base units the wallet holds now``; raises if the chain does not answer."""

REFRESH_S = 0.25
MAX_AGE_S = 1.0


@dataclass(slots=True)
class _Entry:
    held: int
    read_at: float
    admitted: int = 0
    refreshing: asyncio.Task[None] | None = None


class BalanceView:
    def __init__(self, read: Read, clock: Clock | None = None, refresh_s: float = REFRESH_S, max_age_s: float = MAX_AGE_S) -> None:
        self._read = read
        self._clock = clock or SystemClock()
        self.refresh_s = refresh_s
        self.max_age_s = max_age_s
        self._entries: dict[tuple[str, str], _Entry] = {}
        self.chain_reads = 0

    async def reserve(self, account: str, token: str, needed: int) -> int | None:
        """Count ``needed`` base units of ``token`` against the account's wallet: None if it can pay them,
        else what the chain says it holds (then nothing is counted)."""
        key = (account, token)
        entry = self._entries.get(key)
        now = self._clock.now()
        if entry is not None and now - entry.read_at <= self.max_age_s and entry.held - entry.admitted >= needed:
            entry.admitted += needed
            if now - entry.read_at >= self.refresh_s and entry.refreshing is None:
                entry.refreshing = asyncio.get_running_loop().create_task(self._refresh(key, entry))
            return None
        held = await self._read_now(account, token, now)
        if held < needed:
            return held
        self._entries[key].admitted += needed
        return None

    async def _read_now(self, account: str, token: str, started: float) -> int:
        self.chain_reads += 1
        held = await self._read(account, token)
        key = (account, token)
        current = self._entries.get(key)
        if current is None or current.read_at <= started:  # a later read (finished first) is kept
            if current is not None and current.refreshing is not None:
                current.refreshing.cancel()
            self._entries[key] = _Entry(held, started)
        return held

    async def _refresh(self, key: tuple[str, str], entry: _Entry) -> None:
        """Read the balance again; what was admitted while the read was under way still counts against it."""
        started = self._clock.now()
        before = entry.admitted
        try:
            self.chain_reads += 1
            held = await self._read(*key)
        except Exception:  # the view ages out and the next order asks the chain itself
            log.warning("balance refresh failed", exc_info=True)
            return
        finally:
            entry.refreshing = None
        if self._entries.get(key) is entry:
            entry.held, entry.read_at, entry.admitted = held, started, entry.admitted - before

    def close(self) -> None:
        for entry in self._entries.values():
            if entry.refreshing is not None:
                entry.refreshing.cancel()
