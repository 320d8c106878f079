"""Leases and run epochs: the arithmetic of fencing, with no I/O.

Two things are fenced. A *run* of an order holds an epoch (a number PostgreSQL increments when the
run claims the order); a write or a signature is accepted only from the current epoch. The
*dispatcher* of a set of stores holds a :class:`Lease` (holder, fencing token, expiry on the
database's clock), renewed well before it expires; another holder may take it only once it has
expired. Pure functions of their inputs, so the rules are tested without a database or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

UNFENCED = -1
"""The epoch of a write that claims no run (recovery, repairs of a hot copy from PostgreSQL)."""


def accepts(stored_epoch: int, writer_epoch: int) -> bool:
    """A write from ``writer_epoch`` is accepted over a record last written by ``stored_epoch``.

    An unfenced write (:data:`UNFENCED`) is always accepted: it carries PostgreSQL's own state."""
    return writer_epoch == UNFENCED or writer_epoch >= stored_epoch


@dataclass(frozen=True)
class Lease:
    """Who holds a lease, its fencing token (incremented at each change of holder) and when it
    expires, in seconds on the clock of the store that keeps it."""

    holder: str
    token: int
    expires_at: float

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


def decide(current: Lease | None, holder: str, now: float, ttl_s: float, holder_gone: bool = False) -> Lease | None:
    """The lease after ``holder`` asks for it at ``now`` (the store's clock), or None if it may not
    have it: a free or expired lease is taken (token + 1), the holder's own is renewed (same token),
    another holder's live lease is refused, unless that holder is known to be gone (``holder_gone``:
    its process no longer exists), when it is taken at once."""
    if ttl_s <= 0:
        raise ValueError("a lease needs a positive time to live")
    if current is None:
        return Lease(holder, 1, now + ttl_s)
    if current.holder == holder:
        return Lease(holder, current.token, now + ttl_s)
    if current.expired(now) or holder_gone:
        return Lease(holder, current.token + 1, now + ttl_s)
    return None


def held_until(asked_at: float, ttl_s: float, margin_s: float) -> float:
    """Until when, on the holder's own clock, it may act on a lease granted for ``ttl_s``: counted
    from when it *asked* (before the store's clock stamped the grant), less a safety margin, so the
    holder stops before any other holder can take the lease over."""
    return asked_at + max(0.0, ttl_s - margin_s)
