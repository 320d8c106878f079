"""Keys and per-account limit overrides in PostgreSQL (the truth; replicas cache them, see
:mod:`engine.adapters.control`)."""

from __future__ import annotations

from typing import Any

import asyncpg

from engine.accounts import ApiKey, Scope
from engine.adapters.postgres import guard

_KEY_COLUMNS = (
    "key_id, account, scopes, secret_hash, created_by, extract(epoch from created_at) * 1000 AS created_ms, "
    "extract(epoch from revoked_at) * 1000 AS revoked_ms"
)


def _key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        key_id=row["key_id"],
        account=row["account"],
        scopes=frozenset(Scope(s) for s in row["scopes"]),
        secret_hash=row["secret_hash"],
        created_at=float(row["created_ms"]),
        created_by=row["created_by"],
        revoked_at=float(row["revoked_ms"]) if row["revoked_ms"] is not None else None,
    )


class KeyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, key: ApiKey) -> None:
        async def op() -> None:
            async with self.pool.acquire() as conn:
                await conn.execute(
                    "INSERT INTO api_keys (key_id, account, scopes, secret_hash, created_at, created_by) "
                    "VALUES ($1, $2, $3, $4, to_timestamp($5 / 1000.0), $6)",
                    key.key_id,
                    key.account,
                    sorted(s.value for s in key.scopes),
                    key.secret_hash,
                    key.created_at,
                    key.created_by,
                )

        await guard(op)

    async def get(self, key_id: str) -> ApiKey | None:
        async def op() -> asyncpg.Record | None:
            async with self.pool.acquire() as conn:
                row: asyncpg.Record | None = await conn.fetchrow(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = $1", key_id)
                return row

        row = await guard(op)
        return _key(row) if row is not None else None

    async def list(self, account: str | None = None, limit: int = 1000) -> list[ApiKey]:
        """Keys, oldest first (revoked ones too: they say who made and who revoked what)."""

        async def op() -> list[asyncpg.Record]:
            async with self.pool.acquire() as conn:
                rows: list[asyncpg.Record] = await conn.fetch(
                    f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE ($1::text IS NULL OR account = $1) ORDER BY created_at, key_id LIMIT $2",
                    account,
                    limit,
                )
                return rows

        return [_key(row) for row in await guard(op)]

    async def revoke(self, key_id: str, revoked_by: str) -> ApiKey | None:
        """Revoke the key (a second revocation changes nothing); the key as stored now, or None if unknown."""

        async def op() -> asyncpg.Record | None:
            async with self.pool.acquire() as conn:
                await conn.execute(
                    "UPDATE api_keys SET revoked_at = now(), revoked_by = $2 WHERE key_id = $1 AND revoked_at IS NULL", key_id, revoked_by
                )
                row: asyncpg.Record | None = await conn.fetchrow(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_id = $1", key_id)
                return row

        row = await guard(op)
        return _key(row) if row is not None else None


class LimitStore:
    """Per-account overrides of the default limits (field name -> value), with a history of changes."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, account: str) -> dict[str, Any]:
        async def op() -> Any:
            async with self.pool.acquire() as conn:
                return await conn.fetchval("SELECT limits FROM account_limits WHERE account = $1", account)

        found = await guard(op)
        return dict(found) if isinstance(found, dict) else {}

    async def put(self, account: str, overrides: dict[str, Any], changed_by: str) -> None:
        """Replace the account's overrides (an empty dict: back to the defaults)."""

        async def op() -> None:
            async with self.pool.acquire() as conn, conn.transaction():
                if overrides:
                    await conn.execute(
                        "INSERT INTO account_limits (account, limits, updated_by, updated_at) VALUES ($1, $2, $3, now()) "
                        "ON CONFLICT (account) DO UPDATE SET limits = $2, updated_by = $3, updated_at = now()",
                        account,
                        overrides,
                        changed_by,
                    )
                else:
                    await conn.execute("DELETE FROM account_limits WHERE account = $1", account)
                await conn.execute(
                    "INSERT INTO account_limit_changes (account, limits, changed_by, changed_at) VALUES ($1, $2, $3, now())",
                    account,
                    overrides,
                    changed_by,
                )

        await guard(op)
