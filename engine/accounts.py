"""Who may trade: accounts, API keys, scopes and per-account limits. Pure: no store, no HTTP.

A key is ``oee_<keyId>_<secret>``: the id names its stored record, the secret proves it. Only the
SHA-256 of the secret is stored; the secret is 256 random bits, so a fast hash is enough (nothing to
brute-force) and it is compared in constant time. Scopes nest: ``admin`` includes ``trade``, which
includes ``read``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

LOCAL_ACCOUNT = "local"
"""The account of every order in open local mode (no ``OEE_ADMIN_KEY``)."""
ADMIN_ACCOUNT = "admin"
"""The account of orders submitted with the ``OEE_ADMIN_KEY`` itself."""
ADMIN_KEY_ID = "admin"
"""How the ``OEE_ADMIN_KEY`` is named in audit records (who halted trading, who made a key)."""

KEY_PREFIX = "oee"
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")
_ACCOUNT = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class Scope(StrEnum):
    READ = "read"
    """GET orders, list them, follow their streams."""
    TRADE = "trade"
    """Everything ``read`` does, and submit and cancel orders."""
    ADMIN = "admin"
    """Everything, for every account: keys, the trading state, risk limits, every account's orders."""


_IMPLIES: dict[Scope, frozenset[Scope]] = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.TRADE: frozenset({Scope.READ, Scope.TRADE}),
    Scope.ADMIN: frozenset({Scope.READ, Scope.TRADE, Scope.ADMIN}),
}


def granted(scopes: frozenset[Scope] | set[Scope]) -> frozenset[Scope]:
    """Every scope the given ones include."""
    return frozenset(s for scope in scopes for s in _IMPLIES[scope])


def valid_account(name: str) -> bool:
    """Account names: 1-64 of ``a-z 0-9 _ . -``, starting with a letter or digit (they appear in keys of Redis)."""
    return bool(_ACCOUNT.fullmatch(name))


def valid_key_id(raw: str) -> bool:
    return bool(_KEY_ID.fullmatch(raw))


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the account its orders belong to, the scopes it holds, and the key it used."""

    account: str
    scopes: frozenset[Scope]
    key_id: str

    def may(self, scope: Scope) -> bool:
        return scope in granted(self.scopes)

    @property
    def is_admin(self) -> bool:
        return Scope.ADMIN in self.scopes

    def sees(self, account: str) -> bool:
        """May this caller see (read, cancel, follow) an order of ``account``?"""
        return self.is_admin or account == self.account


LOCAL_PRINCIPAL = Principal(LOCAL_ACCOUNT, frozenset({Scope.ADMIN}), LOCAL_ACCOUNT)
"""Open local mode: no key, everything allowed, every order the account ``local``."""
ADMIN_PRINCIPAL = Principal(ADMIN_ACCOUNT, frozenset({Scope.ADMIN}), ADMIN_KEY_ID)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(raw: str) -> tuple[str, str] | None:
    """``(keyId, secret)`` of a well-formed key, else None (junk never reaches a store)."""
    if len(raw) > 80:
        return None
    prefix, _, rest = raw.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not _KEY_ID.fullmatch(key_id) or not _SECRET.fullmatch(secret):
        return None
    return key_id, secret


def same_secret(presented: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (or two hashes)."""
    return hmac.compare_digest(presented.encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key: never the secret, only its hash."""

    key_id: str
    account: str
    scopes: frozenset[Scope]
    secret_hash: str
    created_at: float
    created_by: str
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def verify(self, secret: str) -> bool:
        return self.active and same_secret(hash_secret(secret), self.secret_hash)

    def principal(self) -> Principal:
        return Principal(self.account, self.scopes, self.key_id)

    def public(self) -> dict[str, Any]:
        """What ``GET /api/keys`` shows: everything but the hash."""
        body: dict[str, Any] = {
            "keyId": self.key_id,
            "account": self.account,
            "scopes": sorted(s.value for s in self.scopes),
            "createdAt": round(self.created_at),
            "createdBy": self.created_by,
        }
        if self.revoked_at is not None:
            body["revokedAt"] = round(self.revoked_at)
        return body


def new_key(account: str, scopes: frozenset[Scope], now_ms: float, created_by: str) -> tuple[ApiKey, str]:
    """A fresh key for ``account`` and its plaintext, which is shown once and never stored."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    record = ApiKey(key_id, account, frozenset(scopes), hash_secret(secret), now_ms, created_by)
    return record, f"{KEY_PREFIX}_{key_id}_{secret}"


def admin_key_matches(presented: str, admin_key: str) -> bool:
    """Is ``presented`` the ``OEE_ADMIN_KEY``? Compared as hashes, in constant time."""
    return same_secret(hash_secret(presented), hash_secret(admin_key))


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True, slots=True)
class AccountLimits:
    """What one account may do. The defaults come from settings; an admin may override any of them per account."""

    rate_per_second: float
    rate_burst: int
    max_open_orders: int
    max_open_notional_usd: float
    max_order_notional_usd: float
    max_depth_share: float
    max_streams: int
    overridden: frozenset[str] = field(default=frozenset(), compare=False)

    FIELDS = (
        "rate_per_second",
        "rate_burst",
        "max_open_orders",
        "max_open_notional_usd",
        "max_order_notional_usd",
        "max_depth_share",
        "max_streams",
    )

    def with_overrides(self, overrides: dict[str, Any]) -> AccountLimits:
        """These limits with ``overrides`` (field name -> value; unknown names are ignored)."""
        known = {k: v for k, v in overrides.items() if k in self.FIELDS and v is not None}
        return replace(self, **known, overridden=frozenset(known))

    def public(self) -> dict[str, Any]:
        return {
            "ratePerSecond": self.rate_per_second,
            "rateBurst": self.rate_burst,
            "maxOpenOrders": self.max_open_orders,
            "maxOpenNotionalUsd": self.max_open_notional_usd,
            "maxOrderNotionalUsd": self.max_order_notional_usd,
            "maxDepthShare": self.max_depth_share,
            "maxStreams": self.max_streams,
        }
