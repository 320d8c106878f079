"""PostgreSQL schema of settlement: migrations 40-49. Applied by :func:`engine.adapters.postgres.migrate`
with the core's, in version order."""

from __future__ import annotations

SETTLEMENT_MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        40,
        """
        -- The order's signed transaction, kept before it is sent: what any later run asks the chain about.
        CREATE TABLE order_settlements (
            order_id text PRIMARY KEY REFERENCES orders (order_id) ON DELETE CASCADE,
            signature text NOT NULL,
            signed_tx bytea NOT NULL,
            last_valid_height bigint NOT NULL,
            replaced integer NOT NULL DEFAULT 0,
            saved_at timestamptz NOT NULL DEFAULT now(),
            -- the venues' own time for the legs (asked, agreed): the benchmark subtracts it from an order's time
            legs_asked_at timestamptz,
            legs_agreed_at timestamptz
        );
        CREATE INDEX order_settlements_signature_idx ON order_settlements (signature);
        -- The simulated venues' ledger deduplicated swaps by (venue, order_id); the protocol does that now.
        DROP TABLE IF EXISTS venue_swaps;
        """,
    ),
)
