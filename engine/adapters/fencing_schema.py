"""The fencing schema: run epochs on orders, a guard trigger, and the dispatcher's lease.

* ``orders.run_epoch``: incremented by each run that claims the order
  (:meth:`engine.adapters.postgres.PostgresJournal.claim_run`); every write of a run is conditional
  on it, so a run another one has replaced (a zombie) cannot write.
* ``orders.last_seq``: the seq of the order's last stored event.
* A trigger refuses to move a terminal order to another status and to lower ``last_seq``: defence in
  depth under the epoch check, whatever statement tries it.
* ``dispatch_leases``: one row per set of stores (database + Redis prefix), held by one dispatcher
  (:mod:`engine.adapters.dispatch_lease`).
"""

from __future__ import annotations

from engine.lifecycle import TERMINAL_SQL

FENCING_MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        30,
        """
        ALTER TABLE orders
            ADD COLUMN run_epoch bigint NOT NULL DEFAULT 0,
            ADD COLUMN last_seq integer NOT NULL DEFAULT 0;
        UPDATE orders o SET last_seq = e.last_seq
        FROM (SELECT order_id, max(seq) AS last_seq FROM order_events GROUP BY order_id) e
        WHERE o.order_id = e.order_id;
        CREATE TABLE dispatch_leases (
            scope       text PRIMARY KEY,
            holder      text NOT NULL,
            token       bigint NOT NULL,
            expires_at  timestamptz NOT NULL,
            process     text NOT NULL DEFAULT ''
        );
        """,
    ),
    (
        31,
        f"""
        CREATE FUNCTION oee_guard_order_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.status IN {TERMINAL_SQL} AND NEW.status IS DISTINCT FROM OLD.status THEN
                RAISE EXCEPTION 'order % is %: refusing to move it to %', OLD.order_id, OLD.status, NEW.status
                    USING ERRCODE = 'check_violation';
            END IF;
            IF NEW.last_seq < OLD.last_seq THEN
                RAISE EXCEPTION 'order % has seq %: refusing to lower it to %', OLD.order_id, OLD.last_seq, NEW.last_seq
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END
        $$;
        CREATE TRIGGER orders_guard BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION oee_guard_order_update();
        """,
    ),
)
