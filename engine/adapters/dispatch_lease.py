"""The dispatcher's lease in PostgreSQL: one dispatcher per set of stores (database + Redis prefix).

A ``dispatch_leases`` row per scope holds the holder, a fencing token (incremented at each change of
holder) and an expiry on the database's clock. :meth:`DispatchLease.acquire` takes or renews it in
one short transaction (the row locked while :func:`engine.lease.decide` rules), so two engines on the
same stores never both hold it; :meth:`DispatchLease.release` frees it at an orderly stop so a
successor need not wait out the expiry.
"""

from __future__ import annotations

import asyncpg

from engine.adapters.postgres import guard
from engine.lease import Lease, decide


class DispatchLease:
    def __init__(self, pool: asyncpg.Pool, scope: str, holder: str, ttl_s: float) -> None:
        self.pool = pool
        self.scope = scope
        self.holder = holder
        self.ttl_s = ttl_s

    async def acquire(self) -> Lease | None:
        """Take the lease if it is free or expired, renew it if held here; None if another holder's
        lease is live. Raises :class:`engine.errors.StoreUnavailable` if PostgreSQL cannot answer."""

        async def op() -> Lease | None:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO dispatch_leases (scope, holder, token, expires_at) VALUES ($1, '', 0, '-infinity') "
                    "ON CONFLICT (scope) DO NOTHING",
                    self.scope,
                )
                row = await conn.fetchrow(
                    "SELECT holder, token, extract(epoch from expires_at) AS expires, extract(epoch from clock_timestamp()) AS now "
                    "FROM dispatch_leases WHERE scope = $1 FOR UPDATE",
                    self.scope,
                )
                assert row is not None
                current = Lease(row["holder"], int(row["token"]), float(row["expires"])) if row["holder"] else None
                granted = decide(current, self.holder, float(row["now"]), self.ttl_s)
                if granted is None:
                    return None
                await conn.execute(
                    "UPDATE dispatch_leases SET holder = $2, token = $3, expires_at = to_timestamp($4) WHERE scope = $1",
                    self.scope,
                    granted.holder,
                    granted.token,
                    granted.expires_at,
                )
                return granted

        return await guard(op)

    async def release(self) -> None:
        """Give the lease up (it expires at once) if held here."""
        await guard(
            lambda: self.pool.execute(
                "UPDATE dispatch_leases SET expires_at = '-infinity' WHERE scope = $1 AND holder = $2", self.scope, self.holder
            )
        )

    async def current(self) -> Lease | None:
        """The lease as stored (None if never taken); ``expires_at`` in seconds since the epoch."""
        row = await guard(
            lambda: self.pool.fetchrow(
                "SELECT holder, token, extract(epoch from expires_at) AS expires FROM dispatch_leases WHERE scope = $1", self.scope
            )
        )
        if row is None or not row["holder"]:
            return None
        return Lease(row["holder"], int(row["token"]), float(row["expires"]))

    async def held_here(self) -> bool:
        """Whether this holder holds a live lease now (the database's clock)."""
        row = await guard(
            lambda: self.pool.fetchval(
                "SELECT holder = $2 AND expires_at > clock_timestamp() FROM dispatch_leases WHERE scope = $1", self.scope, self.holder
            )
        )
        return bool(row)
