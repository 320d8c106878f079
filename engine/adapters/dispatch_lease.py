"""The dispatcher's lease in PostgreSQL: one dispatcher per set of stores (database + Redis prefix).

A ``dispatch_leases`` row per scope holds the holder, a fencing token (incremented at each change of
holder) and an expiry on the database's clock. :meth:`DispatchLease.acquire` takes or renews it in
one short transaction (the row locked while :func:`engine.lease.decide` rules), so two engines on the
same stores never both hold it; :meth:`DispatchLease.release` frees it at an orderly stop so a
successor need not wait out the expiry.

The row also names the holder's process (host, PID namespace, PID). An engine that finds the holder's
process gone on its own host and namespace (the previous run of a restarted engine, or an engine
killed beside it) takes the lease at once instead of waiting out the expiry; across hosts only the
expiry counts.
"""

from __future__ import annotations

import os
import socket

import asyncpg

from engine.adapters.postgres import guard
from engine.lease import Lease, decide


class DispatchLease:
    def __init__(self, pool: asyncpg.Pool, scope: str, holder: str, ttl_s: float) -> None:
        self.pool = pool
        self.scope = scope
        self.holder = holder
        self.ttl_s = ttl_s
        self.process = this_process()

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
                    "SELECT holder, token, process, extract(epoch from expires_at) AS expires, "
                    "extract(epoch from clock_timestamp()) AS now FROM dispatch_leases WHERE scope = $1 FOR UPDATE",
                    self.scope,
                )
                assert row is not None
                current = Lease(row["holder"], int(row["token"]), float(row["expires"])) if row["holder"] else None
                granted = decide(current, self.holder, float(row["now"]), self.ttl_s, holder_gone=process_gone(row["process"]))
                if granted is None:
                    return None
                await conn.execute(
                    "UPDATE dispatch_leases SET holder = $2, token = $3, expires_at = to_timestamp($4), process = $5 WHERE scope = $1",
                    self.scope,
                    granted.holder,
                    granted.token,
                    granted.expires_at,
                    self.process,
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


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "?"


def this_process() -> str:
    """This process as a lease names it: ``host/pid-namespace/pid``."""
    return f"{socket.gethostname()}/{_pid_namespace()}/{os.getpid()}"


def process_gone(process: str) -> bool:
    """True only if ``process`` (as :func:`this_process` names one) ran on this host, in this PID
    namespace, and no longer exists. Anything else, unknown included, counts as alive."""
    host, _, rest = process.partition("/")
    namespace, _, pid = rest.partition("/")
    if host != socket.gethostname() or namespace != _pid_namespace() or namespace == "?" or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
