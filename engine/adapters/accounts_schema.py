"""PostgreSQL schema of accounts, keys, limits and the trading state: migrations 20-29.

Applied by :func:`engine.adapters.postgres.migrate` with the core's, in version order.
"""

from __future__ import annotations

ACCOUNT_MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        20,
        """
        -- Every order belongs to an account; idempotency keys are the account's own.
        ALTER TABLE orders
            ADD COLUMN account text NOT NULL DEFAULT 'local',
            ADD COLUMN notional_usd double precision;
        ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_idempotency_key_key;
        CREATE UNIQUE INDEX orders_account_idempotency_idx ON orders (account, idempotency_key);
        CREATE INDEX orders_account_list_idx ON orders (account, submitted_at DESC, order_id DESC);

        CREATE TABLE api_keys (
            key_id       text PRIMARY KEY,
            account      text NOT NULL,
            scopes       text[] NOT NULL,
            secret_hash  text NOT NULL,
            created_at   timestamptz NOT NULL,
            created_by   text NOT NULL,
            revoked_at   timestamptz,
            revoked_by   text
        );
        CREATE INDEX api_keys_account_idx ON api_keys (account, created_at);

        CREATE TABLE account_limits (
            account     text PRIMARY KEY,
            limits      jsonb NOT NULL,
            updated_by  text NOT NULL,
            updated_at  timestamptz NOT NULL
        );
        CREATE TABLE account_limit_changes (
            id          bigserial PRIMARY KEY,
            account     text NOT NULL,
            limits      jsonb NOT NULL,
            changed_by  text NOT NULL,
            changed_at  timestamptz NOT NULL
        );

        CREATE TABLE trading_state_changes (
            id          bigserial PRIMARY KEY,
            scope       text NOT NULL,
            state       text NOT NULL CHECK (state IN ('active', 'halted')),
            reason      text NOT NULL,
            changed_by  text NOT NULL,
            changed_at  timestamptz NOT NULL
        );
        CREATE INDEX trading_state_changes_scope_idx ON trading_state_changes (scope, id DESC);
        """,
    ),
)
