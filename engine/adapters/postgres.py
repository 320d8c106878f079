"""PostgreSQL: the source of truth. Orders and their event trail (and the table of the simulated ledger).

The schema is created and migrated at start-up, idempotently, under an advisory
lock so several processes starting at once do not race.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

from engine.accounts import LOCAL_ACCOUNT
from engine.adapters.accounts_schema import ACCOUNT_MIGRATIONS
from engine.adapters.fencing_schema import FENCING_MIGRATIONS
from engine.adapters.settlement_schema import SETTLEMENT_MIGRATIONS
from engine.batching import Coalescer
from engine.errors import DuplicateRequest, StaleRun, StoreUnavailable
from engine.instruments import STORE_ERRORS
from engine.intake import NewOrder
from engine.lease import UNFENCED
from engine.lifecycle import CANCELLABLE_SQL, HELD_BY_WATCHER_SQL, REPEATS_DECISION, TERMINAL_SQL
from engine.models import Order, OrderEvent, OrderStatus, RoutingDecision

log = logging.getLogger("engine.postgres")

T = TypeVar("T")

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE orders (
            order_id          text PRIMARY KEY,
            token_in          text NOT NULL,
            token_out         text NOT NULL,
            amount            double precision NOT NULL,
            order_type        text NOT NULL,
            status            text NOT NULL,
            submitted_at      timestamptz NOT NULL,
            executed_at       timestamptz,
            failed_at         timestamptz,
            failure_reason    text,
            attempts          integer NOT NULL DEFAULT 0,
            routing_decision  jsonb,
            tx_hash           text,
            execution_price   double precision,
            execution_amount  double precision,
            idempotency_key   text UNIQUE,
            request_hash      text,
            updated_at        timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX orders_open_idx ON orders (submitted_at) WHERE status NOT IN ('confirmed', 'failed');
        CREATE TABLE order_events (
            order_id    text NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
            seq         integer NOT NULL,
            status      text NOT NULL,
            payload     jsonb NOT NULL,
            created_at  timestamptz NOT NULL,
            PRIMARY KEY (order_id, seq)
        );
        CREATE TABLE venue_swaps (
            venue        text NOT NULL,
            order_id     text NOT NULL,
            tx_hash      text NOT NULL UNIQUE,
            amount_in    double precision NOT NULL,
            amount_out   double precision NOT NULL,
            price        double precision NOT NULL,
            executed_at  timestamptz NOT NULL,
            PRIMARY KEY (venue, order_id)
        );
        """,
    ),
    (
        2,
        """
        ALTER TABLE orders
            ADD COLUMN slippage_bps integer NOT NULL DEFAULT 50,
            ADD COLUMN limit_price double precision,
            ADD COLUMN max_price double precision,
            ADD COLUMN expires_at timestamptz,
            ADD COLUMN tx_hashes jsonb,
            ADD COLUMN cancelled_at timestamptz,
            ADD COLUMN expired_at timestamptz,
            ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false,
            ADD COLUMN submit_claimed boolean NOT NULL DEFAULT false,
            ADD COLUMN triggered_at timestamptz;
        DROP INDEX orders_open_idx;
        CREATE INDEX orders_open_idx ON orders (submitted_at) WHERE status NOT IN ('confirmed', 'failed', 'cancelled', 'expired');
        CREATE INDEX orders_list_idx ON orders (submitted_at DESC, order_id DESC);
        """,
    ),
    (
        3,
        """
        ALTER TABLE venue_swaps ADD COLUMN sent_at timestamptz;
        """,
    ),
    (
        4,
        """
        CREATE SEQUENCE order_event_ids;
        ALTER TABLE order_events ADD COLUMN event_id bigint;
        CREATE UNIQUE INDEX order_events_event_id_idx ON order_events (event_id) WHERE event_id IS NOT NULL;
        CREATE INDEX order_events_unsequenced_idx ON order_events (created_at, order_id, seq) WHERE event_id IS NULL;
        """,
    ),
)

IDEMPOTENCY_HOURS = 24
"""An Idempotency-Key names the order it created for this long; then the account may use it again."""

_MIGRATION_LOCK = 0x0E_E0_01

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    TimeoutError,
)


async def guard(op: Callable[[], Awaitable[T]]) -> T:
    """Run ``op``; a lost or refused connection becomes :class:`StoreUnavailable`."""
    try:
        return await op()
    except _UNAVAILABLE as exc:
        STORE_ERRORS.inc("postgres")
        raise StoreUnavailable("postgres", f"{type(exc).__name__}: {exc}") from exc


async def ensure_database(dsn: str) -> None:
    """Create the DSN's database if the server lacks it (connecting to ``postgres`` to do so)."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except asyncpg.InvalidCatalogNameError:
        parts = urlsplit(dsn)
        database = unquote(parts.path.lstrip("/"))
        admin_dsn = urlunsplit(parts._replace(path="/postgres"))
        admin = await asyncpg.connect(admin_dsn, timeout=10)
        try:
            await admin.execute(f'CREATE DATABASE "{database.replace(chr(34), "")}"')
            log.info("created database", extra={"database": database})
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await admin.close()
    else:
        await conn.close()


async def migrate(pool: asyncpg.Pool) -> int:
    """Apply missing migrations; return the schema version."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        every = sorted(MIGRATIONS + ACCOUNT_MIGRATIONS + FENCING_MIGRATIONS + SETTLEMENT_MIGRATIONS)
        for version, sql in every:
            if version not in applied:
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                log.info("applied migration", extra={"version": version})
        return max(v for v, _ in every)


async def prepare_database(dsn: str) -> int:
    """Create the database if the server lacks it, then migrate it; return the schema version."""
    await ensure_database(dsn)
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        return await migrate(pool)
    finally:
        await pool.close()


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A released connection keeps its session: asyncpg's default reset is a query (advisory unlock, CLOSE
    ALL, UNLISTEN, RESET ALL) and a round trip on every release, and pooled connections here hold no session
    state (locks are transaction-scoped, LISTEN has its own connection). An open transaction is still
    rolled back and listeners dropped by asyncpg before this runs."""


async def create_pool(dsn: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session, command_timeout=10
    )
    assert pool is not None
    return pool


_ORDER_COLUMNS = """
    order_id, token_in, token_out, amount, order_type, status,
    extract(epoch from submitted_at) * 1000 AS submitted_ms,
    extract(epoch from executed_at) * 1000 AS executed_ms,
    extract(epoch from failed_at) * 1000 AS failed_ms,
    failure_reason, attempts, routing_decision, tx_hash, execution_price, execution_amount,
    slippage_bps, limit_price, max_price, tx_hashes, cancel_requested,
    extract(epoch from expires_at) * 1000 AS expires_ms,
    extract(epoch from cancelled_at) * 1000 AS cancelled_ms,
    extract(epoch from expired_at) * 1000 AS expired_ms,
    extract(epoch from triggered_at) * 1000 AS triggered_ms,
    account, notional_usd
"""


def _ms(value: object) -> float | None:
    return float(value) if value is not None else None  # type: ignore[arg-type]


def _order_from_row(row: asyncpg.Record) -> Order:
    decision = row["routing_decision"]
    return Order(
        order_id=row["order_id"],
        token_in=row["token_in"],
        token_out=row["token_out"],
        amount=row["amount"],
        order_type=row["order_type"],
        status=OrderStatus(row["status"]),
        submitted_at=float(row["submitted_ms"]),
        executed_at=_ms(row["executed_ms"]),
        failed_at=_ms(row["failed_ms"]),
        failure_reason=row["failure_reason"],
        attempts=row["attempts"],
        routing_decision=RoutingDecision.model_validate(decision) if decision else None,
        tx_hash=row["tx_hash"],
        execution_price=row["execution_price"],
        execution_amount=row["execution_amount"],
        tx_hashes=row["tx_hashes"],
        slippage_bps=row["slippage_bps"],
        limit_price=row["limit_price"],
        max_price=row["max_price"],
        expires_at=_ms(row["expires_ms"]),
        cancelled_at=_ms(row["cancelled_ms"]),
        expired_at=_ms(row["expired_ms"]),
        cancel_requested=row["cancel_requested"],
        triggered_at=_ms(row["triggered_ms"]),
        account=row["account"],
        notional_usd=row["notional_usd"],
    )


_Write = tuple[Order, tuple[OrderEvent, ...], bool, int]
"""A journal write: the order's state, its new events, whether it claims, the writing run's epoch."""


class ClaimedRun(NamedTuple):
    """A run's claim on an order: the order, the seq of its last stored event, and the run's epoch."""

    order: Order
    seq: int
    epoch: int


K = TypeVar("K")


def _rounds(items: list[K], key: Callable[[K], str]) -> list[list[K]]:
    """Split a batch so that no round holds two items of one order: the nth item of an order goes in
    round n (two runs of one order in one statement would race each other)."""
    rounds: list[list[K]] = []
    seen: dict[str, int] = {}
    for item in items:
        nth = seen.get(key(item), 0)
        seen[key(item)] = nth + 1
        if nth == len(rounds):
            rounds.append([])
        rounds[nth].append(item)
    return rounds


class PostgresJournal:
    """Orders and their event trail. Implements :class:`engine.ports.OrderJournal` plus intake and queries."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._records: Coalescer[_Write, bool | None] = Coalescer(self._record_many, max_batch=256, max_in_flight=2)
        self._claims: Coalescer[str, ClaimedRun | None] = Coalescer(self._claim_many, max_batch=256, max_in_flight=4)
        self._checks: Coalescer[tuple[str, int], bool] = Coalescer(self._check_many, max_batch=256, max_in_flight=4)
        self._event_reads: Coalescer[str, list[OrderEvent]] = Coalescer(self._events_many, max_batch=256, max_in_flight=4)
        self._loads: Coalescer[str, tuple[Order, int] | None] = Coalescer(self._load_many, max_batch=256, max_in_flight=4)

    def batching(self) -> dict[str, Coalescer[Any, Any]]:
        return {
            "records": self._records,
            "event_reads": self._event_reads,
            "loads": self._loads,
            "claims": self._claims,
            "checks": self._checks,
        }

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            async with self.pool.acquire() as conn:
                yield conn
        except _UNAVAILABLE as exc:
            STORE_ERRORS.inc("postgres")
            raise StoreUnavailable("postgres", f"{type(exc).__name__}: {exc}") from exc

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.fetchval("SELECT 1")

    async def insert_order(
        self, order: Order, first: OrderEvent, idempotency_key: str | None = None, request_hash: str | None = None
    ) -> None:
        """Store one new order; raises :class:`DuplicateRequest` if ``idempotency_key`` was already used."""
        (duplicate,) = await self.insert_orders([NewOrder(order, first, idempotency_key, request_hash)])
        if duplicate is not None:
            raise duplicate

    async def insert_orders(self, batch: list[NewOrder]) -> list[DuplicateRequest | None]:
        """Store new orders and their first events in one statement (atomic, one round trip).

        An order whose idempotency key is already taken (by its account, in the last
        :data:`IDEMPOTENCY_HOURS` hours) is not stored: its slot in the answer holds the order that key
        created (a key used twice within the batch: the first wins).
        """
        answer: dict[str, DuplicateRequest | None] = {}
        pending = list(batch)
        for _ in range(3):  # a key's holder can be deleted (intake compensation) between the two reads
            stored = await self._insert_orders(pending)
            keys = [
                (n.order.account, n.idempotency_key, n.order.submitted_at)
                for n in pending
                if n.order.order_id not in stored and n.idempotency_key is not None
            ]
            holders = await self._key_holders(keys) if keys else {}
            retry: list[NewOrder] = []
            for item in pending:
                held = holders.get((item.order.account, item.idempotency_key or ""))
                if item.order.order_id in stored:
                    answer[item.order.order_id] = None
                elif held is not None:
                    answer[item.order.order_id] = DuplicateRequest(*held)
                else:
                    retry.append(item)
            if not retry:
                return [answer[n.order.order_id] for n in batch]
            pending = retry
        raise StoreUnavailable("postgres", "idempotency keys kept changing hands; try again")

    async def _insert_orders(self, batch: list[NewOrder]) -> set[str]:
        columns: list[list[object]] = [[] for _ in range(17)]
        for item in batch:
            order = item.order
            row = (
                order.order_id,
                order.token_in,
                order.token_out,
                order.amount,
                str(order.order_type),
                order.status.value,
                order.submitted_at,
                item.idempotency_key,
                item.request_hash,
                order.slippage_bps,
                order.limit_price,
                order.max_price,
                order.expires_at,
                item.first.seq,
                item.first.model_dump_json(by_alias=True, exclude_none=True),
                order.account,
                order.notional_usd,
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        async with self._conn() as conn:
            rows = await conn.fetch(
                """
                WITH incoming AS (
                    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::text[], $7::float8[],
                                         $8::text[], $9::text[], $10::int[], $11::float8[], $12::float8[], $13::float8[],
                                         $14::int[], $15::text[], $16::text[], $17::float8[])
                        AS i(order_id, token_in, token_out, amount, order_type, status, submitted_ms, idempotency_key,
                             request_hash, slippage_bps, limit_price, max_price, expires_ms, seq, payload, account, notional_usd)
                ), inserted AS (
                    INSERT INTO orders (order_id, token_in, token_out, amount, order_type, status, submitted_at, idempotency_key,
                                        request_hash, slippage_bps, limit_price, max_price, expires_at, account, notional_usd)
                    SELECT order_id, token_in, token_out, amount, order_type, status, to_timestamp(submitted_ms / 1000.0),
                           idempotency_key, request_hash, slippage_bps, limit_price, max_price, to_timestamp(expires_ms / 1000.0),
                           account, notional_usd
                    FROM incoming
                    ON CONFLICT (account, idempotency_key) DO NOTHING
                    RETURNING order_id, submitted_at
                )
                INSERT INTO order_events (order_id, seq, status, payload, created_at)
                SELECT i.order_id, i.seq, i.status, i.payload::jsonb, inserted.submitted_at
                FROM inserted JOIN incoming i USING (order_id)
                RETURNING order_id
                """,
                *columns,
            )
        return {row["order_id"] for row in rows}

    async def _key_holders(self, keys: list[tuple[str, str, float]]) -> dict[tuple[str, str], tuple[str, str | None]]:
        """The orders holding these (account, key) pairs. A key used more than :data:`IDEMPOTENCY_HOURS`
        before the new order's submission time is released first (its order keeps everything but the
        key), so the caller's retry may take it."""
        accounts, names, times = [a for a, _, _ in keys], [k for _, k, _ in keys], [t for _, _, t in keys]
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"""
                WITH wanted AS (
                    SELECT * FROM unnest($1::text[], $2::text[], $3::float8[]) AS w(account, idempotency_key, submitted_ms)
                ), released AS (
                    UPDATE orders o SET idempotency_key = NULL
                    FROM wanted w
                    WHERE o.account = w.account AND o.idempotency_key = w.idempotency_key
                      AND o.submitted_at < to_timestamp(w.submitted_ms / 1000.0) - interval '{IDEMPOTENCY_HOURS} hours'
                    RETURNING o.order_id
                )
                SELECT o.account, o.idempotency_key, o.order_id, o.request_hash
                FROM orders o JOIN wanted w USING (account, idempotency_key)
                WHERE o.order_id NOT IN (SELECT order_id FROM released)
                """,
                accounts,
                names,
                times,
            )
        return {(row["account"], row["idempotency_key"]): (row["order_id"], row["request_hash"]) for row in rows}

    async def delete_orders(self, order_ids: list[str]) -> None:
        """Undo an intake whose second half (Redis) failed, so nothing half-stored remains."""
        async with self._conn() as conn:
            await conn.execute("DELETE FROM orders WHERE order_id = ANY($1::text[])", order_ids)

    async def record(self, order: Order, events: Sequence[OrderEvent], claim: bool = False, epoch: int | None = None) -> bool:
        """Append the events (idempotent per seq) and store the order's new state, atomically; with
        ``claim``, also claim the order for submission unless a cancel was requested (True if claimed).
        With ``epoch``, only while the order's ``run_epoch`` is still ``epoch``: else nothing is written
        and :class:`StaleRun` is raised.

        Concurrent calls share one statement (:class:`engine.batching.Coalescer`); each returns
        once its own events are committed. The claim rides on the same UPDATE: a separate claim
        statement on the same rows, running beside a batch of records, deadlocked under load.
        """
        written = await self._records.submit((order, tuple(events), claim, UNFENCED if epoch is None else epoch))
        if written is None:
            if epoch is not None:
                raise StaleRun(order.order_id, epoch)
            return not claim
        return written

    async def _record_many(self, batch: list[_Write]) -> list[bool | None]:
        # An order's writes normally come one after another (OrderRun's writer); should two runs of one
        # order write at once, their writes go in separate statements, in order (UPDATE ... FROM
        # would pick one of two matching rows at random).
        answers: dict[tuple[str, int], bool] = {}
        for part in _rounds(batch, lambda item: item[0].order_id):
            answers.update(await self._record_round(part))
        return [answers.get((order.order_id, events[-1].seq)) for order, events, _, _ in batch]

    async def _record_round(self, batch: list[_Write]) -> dict[tuple[str, int], bool]:
        """One statement: one state update per order, and the events of every write whose update
        matched (its run still holds the order). Answers, for each write that was stored, whether its
        order is claimed (True for a write that claims nothing).

        The routing decision is sent only by a write whose events set one (``building``, or a failure
        after a re-quote; ``submitted`` and ``confirmed`` only repeat it, :data:`REPEATS_DECISION`):
        after ``building`` it is the largest field of the row, and rewriting it on ``submitted`` and
        ``confirmed`` doubled the statement's work.
        """
        orders: list[list[object]] = [[] for _ in range(16)]
        events: list[list[object]] = [[] for _ in range(5)]
        for order, written, claim, epoch in batch:
            decided = any(event.routing_decision is not None and event.status not in REPEATS_DECISION for event in written)
            row = (
                order.order_id,
                order.status.value,
                order.attempts,
                order.routing_decision.model_dump_json(by_alias=True) if decided and order.routing_decision else None,
                order.tx_hash,
                order.execution_price,
                order.execution_amount,
                order.failure_reason,
                order.executed_at,
                order.failed_at,
                json.dumps(order.tx_hashes) if order.tx_hashes is not None else None,
                order.cancelled_at,
                order.expired_at,
                written[-1].seq,
                claim,
                epoch,
            )
            for column, value in zip(orders, row, strict=True):
                column.append(value)
            for event in written:
                for column, value in zip(
                    events,
                    (event.order_id, event.seq, event.status.value, event.model_dump_json(by_alias=True, exclude_none=True), event.at),
                    strict=True,
                ):
                    column.append(value)
        async with self._conn() as conn:
            rows = await conn.fetch(
                """
                WITH incoming AS (
                    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::float8[], $7::float8[],
                                         $8::text[], $9::float8[], $10::float8[], $11::text[], $12::float8[], $13::float8[],
                                         $14::int[], $15::bool[], $16::int8[])
                        AS i(order_id, status, attempts, routing_decision, tx_hash, execution_price, execution_amount,
                             failure_reason, executed_ms, failed_ms, tx_hashes, cancelled_ms, expired_ms, seq, claim, epoch)
                ), updated AS (
                    UPDATE orders o SET status = i.status, attempts = i.attempts,
                        routing_decision = coalesce(i.routing_decision::jsonb, o.routing_decision),
                        tx_hash = i.tx_hash, execution_price = i.execution_price, execution_amount = i.execution_amount,
                        failure_reason = i.failure_reason, executed_at = to_timestamp(i.executed_ms / 1000.0),
                        failed_at = to_timestamp(i.failed_ms / 1000.0), updated_at = now(), tx_hashes = i.tx_hashes::jsonb,
                        cancelled_at = to_timestamp(i.cancelled_ms / 1000.0), expired_at = to_timestamp(i.expired_ms / 1000.0),
                        submit_claimed = CASE WHEN i.claim THEN NOT o.cancel_requested ELSE o.submit_claimed END,
                        last_seq = greatest(o.last_seq, i.seq)
                    FROM incoming i
                    WHERE o.order_id = i.order_id AND (i.epoch = -1 OR o.run_epoch = i.epoch)
                    RETURNING o.order_id, i.seq, i.claim, o.submit_claimed
                ), appended AS (
                    INSERT INTO order_events (order_id, seq, status, payload, created_at)
                    SELECT e.order_id, e.seq, e.status, e.payload::jsonb, to_timestamp(e.at_ms / 1000.0)
                    FROM unnest($17::text[], $18::int[], $19::text[], $20::text[], $21::float8[])
                        AS e(order_id, seq, status, payload, at_ms)
                    JOIN updated u ON u.order_id = e.order_id
                    ON CONFLICT (order_id, seq) DO NOTHING
                )
                SELECT order_id, seq, claim, submit_claimed FROM updated
                """,
                *orders,
                *events,
            )
        return {(row["order_id"], row["seq"]): bool(row["submit_claimed"]) or not row["claim"] for row in rows}

    async def claim_run(self, order_id: str) -> ClaimedRun | None:
        """Start a run of the order: increment its ``run_epoch`` and load it, in one statement.
        Answers the order, the seq of its last stored event and the run's epoch (None if unknown).
        Every later write of the run passes that epoch; once another run claims the order, they are
        refused. Runs claimed together (a batch handed to an executor) share one statement."""
        return await self._claims.submit(order_id)

    async def _claim_many(self, order_ids: list[str]) -> list[ClaimedRun | None]:
        claimed: dict[tuple[str, int], ClaimedRun] = {}
        for nth, part in enumerate(_rounds(order_ids, lambda order_id: order_id)):
            async with self._conn() as conn:
                rows = await conn.fetch(
                    f"""
                    WITH o AS (
                        UPDATE orders SET run_epoch = run_epoch + 1 WHERE order_id = ANY($1::text[]) RETURNING *
                    )
                    SELECT {_ORDER_COLUMNS}, run_epoch,
                        greatest(last_seq, (SELECT coalesce(max(seq), 0) FROM order_events e WHERE e.order_id = o.order_id)) AS stored_seq
                    FROM o
                    """,
                    part,
                )
            for row in rows:
                claimed[(row["order_id"], nth)] = ClaimedRun(_order_from_row(row), int(row["stored_seq"]), int(row["run_epoch"]))
        answers: list[ClaimedRun | None] = []
        seen: dict[str, int] = {}
        for order_id in order_ids:
            nth = seen.get(order_id, 0)
            seen[order_id] = nth + 1
            answers.append(claimed.get((order_id, nth)))
        return answers

    async def assert_current(self, order_id: str, epoch: int) -> bool:
        """Whether the run of ``epoch`` still holds the order (no later run claimed it). Checks made
        together share one query."""
        return await self._checks.submit((order_id, epoch))

    async def _check_many(self, checks: list[tuple[str, int]]) -> list[bool]:
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT order_id, run_epoch FROM orders WHERE order_id = ANY($1::text[])", [c[0] for c in checks])
        epochs = {row["order_id"]: int(row["run_epoch"]) for row in rows}
        return [epochs.get(order_id) == epoch for order_id, epoch in checks]

    async def load(self, order_id: str) -> tuple[Order, int] | None:
        """The order and the seq of its last event. Orders loaded together (a batch handed to an
        executor) share one query."""
        return await self._loads.submit(order_id)

    async def _load_many(self, order_ids: list[str]) -> list[tuple[Order, int] | None]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {_ORDER_COLUMNS}, (SELECT coalesce(max(seq), 0) FROM order_events e WHERE e.order_id = o.order_id) AS last_seq "
                "FROM orders o WHERE order_id = ANY($1::text[])",
                order_ids,
            )
        loaded = {row["order_id"]: (_order_from_row(row), int(row["last_seq"])) for row in rows}
        return [loaded.get(order_id) for order_id in order_ids]

    async def get(self, order_id: str) -> Order | None:
        loaded = await self.load(order_id)
        return loaded[0] if loaded else None

    async def events(self, order_id: str) -> list[OrderEvent]:
        """The order's trail, by seq. Concurrent reads (streams opening together) share one query."""
        return await self._event_reads.submit(order_id)

    async def _events_many(self, order_ids: list[str]) -> list[list[OrderEvent]]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT order_id, payload FROM order_events WHERE order_id = ANY($1::text[]) ORDER BY order_id, seq", order_ids
            )
        trails: dict[str, list[OrderEvent]] = {order_id: [] for order_id in order_ids}
        for row in rows:
            trails[row["order_id"]].append(OrderEvent.model_validate(row["payload"]))
        return [trails[order_id] for order_id in order_ids]

    async def sweep_candidates(self, submitted_before_ms: float) -> list[str]:
        """Ids of open orders submitted before the given time that could need the queue: not a LIMIT or
        SNIPER order held by the watcher (``waiting``, not triggered, not cancelled). Ids only: with tens
        of thousands of orders queued, reading whole rows every few seconds cost the dispatcher a
        fifth of a core (measured)."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT order_id FROM orders WHERE status NOT IN {TERMINAL_SQL} "
                "AND submitted_at < to_timestamp($1 / 1000.0) "
                f"AND NOT {HELD_BY_WATCHER_SQL}",
                submitted_before_ms,
            )
        return [row["order_id"] for row in rows]

    async def terminal_among(self, order_ids: list[str]) -> list[Order]:
        """Those of ``order_ids`` that are terminal, in full: what a stale hot copy must be repaired to."""
        if not order_ids:
            return []
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {_ORDER_COLUMNS} FROM orders WHERE order_id = ANY($1::text[]) AND status IN {TERMINAL_SQL}", order_ids
            )
        return [_order_from_row(row) for row in rows]

    async def open_orders(self) -> list[Order]:
        """Every order not yet terminal, oldest first: what recovery resumes."""
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {_ORDER_COLUMNS} FROM orders WHERE status NOT IN {TERMINAL_SQL} ORDER BY submitted_at")
        return [_order_from_row(row) for row in rows]

    async def cancel_requested(self, order_id: str) -> bool:
        async with self._conn() as conn:
            return bool(await conn.fetchval("SELECT cancel_requested FROM orders WHERE order_id = $1", order_id))

    async def request_cancel(self, order_id: str) -> bool:
        """Flag the order for cancellation if it has not been claimed for submission; True if flagged."""
        async with self._conn() as conn:
            flagged = await conn.fetchval(
                "UPDATE orders SET cancel_requested = true WHERE order_id = $1 AND NOT submit_claimed "
                f"AND status IN {CANCELLABLE_SQL} RETURNING true",
                order_id,
            )
        return bool(flagged)

    async def set_triggered(self, order_id: str, at_ms: float | None, epoch: int | None = None) -> None:
        """Mark a waiting order triggered (or re-armed, with None); with ``epoch``, only while that run
        holds the order (else :class:`StaleRun`)."""
        async with self._conn() as conn:
            done = await conn.fetchval(
                "UPDATE orders SET triggered_at = to_timestamp($2 / 1000.0) "
                "WHERE order_id = $1 AND ($3 = -1 OR run_epoch = $3) RETURNING true",
                order_id,
                at_ms,
                UNFENCED if epoch is None else epoch,
            )
        if not done and epoch is not None:
            raise StaleRun(order_id, epoch)

    async def list_orders(
        self,
        *,
        status: str | None = None,
        order_type: str | None = None,
        token_in: str | None = None,
        token_out: str | None = None,
        limit: int = 50,
        before: tuple[float, str] | None = None,
        account: str | None = None,
    ) -> list[Order]:
        """Orders newest first, filtered (``account``: only that account's); ``before`` is the (submitted
        ms, id) cursor of the last page's end."""
        clauses: list[str] = []
        args: list[object] = []
        filters = (("status", status), ("order_type", order_type), ("token_in", token_in), ("token_out", token_out), ("account", account))
        for column, value in filters:
            if value is not None:
                args.append(value)
                clauses.append(f"{column} = ${len(args)}")
        if before is not None:
            args += [before[0], before[1]]
            clauses.append(f"(submitted_at, order_id) < (to_timestamp(${len(args) - 1} / 1000.0), ${len(args)})")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        args.append(limit)
        sql = f"SELECT {_ORDER_COLUMNS} FROM orders {where} ORDER BY submitted_at DESC, order_id DESC LIMIT ${len(args)}"
        async with self._conn() as conn:
            rows = await conn.fetch(sql, *args)
        return [_order_from_row(row) for row in rows]

    async def find_by_idempotency_key(self, key: str, account: str = LOCAL_ACCOUNT) -> tuple[str, str | None] | None:
        async with self._conn() as conn:
            row = await conn.fetchrow("SELECT order_id, request_hash FROM orders WHERE account = $1 AND idempotency_key = $2", account, key)
        return (row["order_id"], row["request_hash"]) if row else None
