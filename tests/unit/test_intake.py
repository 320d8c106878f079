"""parse_order on a table of bodies, and OrderIntake.submit against in-memory stores."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.errors import STATUS_OF
from engine.errors import DuplicateRequest
from engine.ids import parse_order_id
from engine.intake import Accepted, NewOrder, OrderIntake, Rejection, new_order, request_fingerprint
from engine.intake import parse_order as parse_against
from engine.models import OrderRequest, OrderStatus, OrderType
from engine.tokens import BY_SYMBOL
from venues.simulated.market import catalogue_pairs

NOW_MS = 1_764_000_000_000.0
SOL_MINT = BY_SYMBOL["SOL"].mint
USDC_MINT = BY_SYMBOL["USDC"].mint
UNLISTED_MINT = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU"
TRADABLE = catalogue_pairs()


def parse_order(
    body: bytes, now_ms: float | None = None, extra_pairs: frozenset[tuple[str, str]] = frozenset()
) -> OrderRequest | Rejection:
    """The intake's parser against the simulated venues' pairs (plus ``extra_pairs``, listed since)."""
    return parse_against(body, now_ms, TRADABLE | extra_pairs)


def body(**fields: Any) -> bytes:
    base: dict[str, Any] = {"tokenIn": "SOL", "tokenOut": "USDC", "amount": 1.5, "orderType": "MARKET"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


# --------------------------------------------------------------------------- valid bodies


@pytest.mark.parametrize(
    ("raw", "token_in", "token_out", "amount", "order_type"),
    [
        (body(), "SOL", "USDC", 1.5, OrderType.MARKET),
        (body(tokenIn="sol", tokenOut="usdc"), "SOL", "USDC", 1.5, OrderType.MARKET),
        (body(tokenIn=" Sol ", amount=2), "SOL", "USDC", 2.0, OrderType.MARKET),
        (body(tokenIn=USDC_MINT, tokenOut="SOL", amount=150), "USDC", "SOL", 150.0, OrderType.MARKET),
        (body(tokenIn=SOL_MINT, tokenOut=USDC_MINT), "SOL", "USDC", 1.5, OrderType.MARKET),
        (body(orderType="MARKET"), "SOL", "USDC", 1.5, OrderType.MARKET),
        (body(tokenIn="bonk", tokenOut="sol", amount=1e9), "BONK", "SOL", 1e9, OrderType.MARKET),
        (body(amount=1e12), "SOL", "USDC", 1e12, OrderType.MARKET),
        (body(amount=1e-9), "SOL", "USDC", 1e-9, OrderType.MARKET),
        (body(slippage=0.5, clientId="abc", nested={"x": [1, 2]}), "SOL", "USDC", 1.5, OrderType.MARKET),
        (b'{"token_in": "SOL", "token_out": "USDC", "amount": 1.5, "order_type": "MARKET"}', "SOL", "USDC", 1.5, OrderType.MARKET),
    ],
    ids=["plain", "lowercase", "padded", "usdc-mint", "both-mints", "explicit-market", "bonk", "max", "tiny", "extra-fields", "snake-case"],
)
def test_valid_body_gives_a_canonical_request(raw: bytes, token_in: str, token_out: str, amount: float, order_type: OrderType) -> None:
    request = parse_order(raw)
    assert isinstance(request, OrderRequest), request
    assert (request.token_in, request.token_out, request.amount, request.order_type) == (token_in, token_out, amount, order_type)


def test_extra_fields_are_dropped() -> None:
    request = parse_order(body(slippage=0.5))
    assert isinstance(request, OrderRequest)
    assert "slippage" not in request.model_dump()


# --------------------------------------------------------------------------- invalid JSON


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"not json", b'{"tokenIn": "SOL",}', b"\xff\xfe\x00", b"[" * 100_000],
    ids=["empty", "truncated", "text", "trailing-comma", "binary", "deep-nesting"],
)
def test_malformed_json_is_refused(raw: bytes) -> None:
    rejection = parse_order(raw)
    assert isinstance(rejection, Rejection)
    assert (STATUS_OF[rejection.kind], rejection.error) == (400, "Invalid JSON")
    assert rejection.message.startswith("the body is not valid JSON")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_literals_are_not_json(literal: str) -> None:
    rejection = parse_order(b'{"tokenIn": "SOL", "tokenOut": "USDC", "amount": ' + literal.encode() + b"}")
    assert isinstance(rejection, Rejection)
    assert (STATUS_OF[rejection.kind], rejection.error) == (400, "Invalid JSON")
    assert f"{literal} is not valid JSON" in rejection.message


@pytest.mark.parametrize("raw", [b"[]", b'[{"tokenIn": "SOL"}]', b"null", b"42", b'"SOL"', b"true"])
def test_non_object_json_is_refused(raw: bytes) -> None:
    rejection = parse_order(raw)
    assert isinstance(rejection, Rejection)
    assert (STATUS_OF[rejection.kind], rejection.error) == (400, "Validation failed")
    assert rejection.details == [{"path": [], "message": "must be a JSON object", "code": "object_type"}]


# --------------------------------------------------------------------------- field validation


@pytest.mark.parametrize(
    ("raw", "problems"),
    [
        (body(tokenIn=...), [(["tokenIn"], "missing")]),
        (body(amount=...), [(["amount"], "missing")]),
        (body(orderType=...), [(["orderType"], "missing")]),
        (b"{}", [(["tokenIn"], "missing"), (["tokenOut"], "missing"), (["amount"], "missing"), (["orderType"], "missing")]),
        (
            body(tokenIn="", amount=0, orderType=...),
            [(["tokenIn"], "string_too_short"), (["amount"], "greater_than"), (["orderType"], "missing")],
        ),
        (body(orderType=None), [(["orderType"], "string_type")]),
        (body(tokenIn=""), [(["tokenIn"], "string_too_short")]),
        (body(tokenIn="   "), [(["tokenIn"], "unknown_token")]),
        (body(tokenOut="DOGE"), [(["tokenOut"], "unknown_token")]),
        (body(tokenIn="So1ana"), [(["tokenIn"], "unknown_token")]),
        (body(tokenIn="x" * 65), [(["tokenIn"], "string_too_long")]),
        (body(tokenIn=5), [(["tokenIn"], "string_type")]),
        (body(tokenOut="SOL"), [([], "same_token")]),
        (body(tokenOut=SOL_MINT), [([], "same_token")]),
        (body(amount=0), [(["amount"], "greater_than")]),
        (body(amount=-1.5), [(["amount"], "greater_than")]),
        (b'{"tokenIn": "SOL", "tokenOut": "USDC", "orderType": "MARKET", "amount": -0}', [(["amount"], "greater_than")]),
        (b'{"tokenIn": "SOL", "tokenOut": "USDC", "orderType": "MARKET", "amount": -0.0}', [(["amount"], "greater_than")]),
        (b'{"tokenIn": "SOL", "tokenOut": "USDC", "orderType": "MARKET", "amount": 1e400}', [(["amount"], "finite_number")]),
        (b'{"tokenIn": "SOL", "tokenOut": "USDC", "orderType": "MARKET", "amount": 1e-400}', [(["amount"], "greater_than")]),
        (body(amount=1e13), [(["amount"], "less_than_equal")]),
        (body(amount="10"), [(["amount"], "float_type")]),
        (body(amount=True), [(["amount"], "float_type")]),
        (body(amount=None), [(["amount"], "float_type")]),
        (body(amount=[1]), [(["amount"], "float_type")]),
        (body(orderType="STOP"), [(["orderType"], "enum")]),
        (body(orderType="market"), [(["orderType"], "enum")]),
        (body(tokenIn="FOO", amount=0), [(["tokenIn"], "unknown_token"), (["amount"], "greater_than")]),
        (
            body(tokenIn="", tokenOut="DOGE", amount="1"),
            [(["tokenIn"], "string_too_short"), (["tokenOut"], "unknown_token"), (["amount"], "float_type")],
        ),
    ],
)
def test_invalid_fields_give_one_detail_per_problem(raw: bytes, problems: list[tuple[list[str], str]]) -> None:
    rejection = parse_order(raw)
    assert isinstance(rejection, Rejection), rejection
    assert (STATUS_OF[rejection.kind], rejection.error) == (400, "Validation failed")
    assert rejection.message == f"{len(problems)} problem(s) in the order"
    assert len(rejection.details) == len(problems)
    for detail in rejection.details:
        assert set(detail) == {"path", "message", "code"}
        assert isinstance(detail["message"], str)
        assert detail["message"]
    assert [(d["path"], d["code"]) for d in rejection.details] == problems
    assert rejection.body()["details"] == rejection.details


def test_unknown_token_message_lists_the_tokens() -> None:
    rejection = parse_order(body(tokenIn="DOGE"))
    assert isinstance(rejection, Rejection)
    assert "SOL, USDC, USDT, BONK, JUP, RAY, WIF, MSOL" in rejection.details[0]["message"]


# --------------------------------------------------------------------------- LIMIT, SNIPER, expiry


@pytest.mark.parametrize(
    ("raw", "order_type", "limit_price", "max_price", "expires_at"),
    [
        (body(orderType="LIMIT", limitPrice=160.5), OrderType.LIMIT, 160.5, None, None),
        (body(orderType="LIMIT", limitPrice=160, expiresAt=int(NOW_MS) + 1), OrderType.LIMIT, 160.0, None, int(NOW_MS) + 1),
        (body(orderType="SNIPER"), OrderType.SNIPER, None, None, None),
        (body(orderType="SNIPER", maxPrice=0.007), OrderType.SNIPER, None, 0.007, None),
        (body(orderType="SNIPER", maxPrice=0.007, expiresAt=int(NOW_MS) + 60_000), OrderType.SNIPER, None, 0.007, int(NOW_MS) + 60_000),
    ],
    ids=["limit", "limit-expiring", "sniper", "sniper-capped", "sniper-expiring"],
)
def test_limit_and_sniper_orders_are_accepted(
    raw: bytes, order_type: OrderType, limit_price: float | None, max_price: float | None, expires_at: int | None
) -> None:
    request = parse_order(raw, NOW_MS)
    assert isinstance(request, OrderRequest), request
    assert request.order_type is order_type
    assert (request.limit_price, request.max_price, request.expires_at) == (limit_price, max_price, expires_at)


def test_limit_order_needs_a_limit_price_reported_at_that_field() -> None:
    rejection = parse_order(body(orderType="LIMIT"), NOW_MS)
    assert isinstance(rejection, Rejection)
    assert (STATUS_OF[rejection.kind], rejection.error) == (400, "Validation failed")
    assert [(d["path"], d["code"]) for d in rejection.details] == [(["limitPrice"], "limit_price_required")]
    assert "limitPrice" in rejection.details[0]["message"]


@pytest.mark.parametrize(
    ("raw", "problems"),
    [
        (body(orderType="LIMIT", limitPrice=0), [(["limitPrice"], "greater_than")]),
        (body(orderType="LIMIT", limitPrice=-1.0), [(["limitPrice"], "greater_than")]),
        (body(orderType="LIMIT", limitPrice="150"), [(["limitPrice"], "float_type")]),
        (body(orderType="SNIPER", maxPrice=0), [(["maxPrice"], "greater_than")]),
        (body(orderType="LIMIT", limitPrice=1, expiresAt=0), [(["expiresAt"], "greater_than")]),
        (body(orderType="LIMIT", limitPrice=1, expiresAt=1.5), [(["expiresAt"], "int_type")]),
        (body(slippageBps=5001), [(["slippageBps"], "less_than_equal")]),
        (body(slippageBps=-1), [(["slippageBps"], "greater_than_equal")]),
    ],
)
def test_invalid_limit_sniper_fields(raw: bytes, problems: list[tuple[list[str], str]]) -> None:
    rejection = parse_order(raw, NOW_MS)
    assert isinstance(rejection, Rejection), rejection
    assert [(d["path"], d["code"]) for d in rejection.details] == problems


@pytest.mark.parametrize("expires_at", [int(NOW_MS), int(NOW_MS) - 1, 1])
def test_expiry_must_be_in_the_future(expires_at: int) -> None:
    rejection = parse_order(body(orderType="LIMIT", limitPrice=160, expiresAt=expires_at), NOW_MS)
    assert isinstance(rejection, Rejection)
    assert (STATUS_OF[rejection.kind], rejection.error) == (400, "Validation failed")
    assert rejection.details == [{"path": ["expiresAt"], "message": rejection.message, "code": "in_the_past"}]


def test_expiry_is_not_checked_without_a_clock() -> None:
    request = parse_order(body(orderType="LIMIT", limitPrice=160, expiresAt=1))
    assert isinstance(request, OrderRequest)
    assert request.expires_at == 1


def test_sniper_may_name_a_pair_no_venue_trades_yet() -> None:
    request = parse_order(body(orderType="SNIPER", tokenIn="SOL", tokenOut=UNLISTED_MINT), NOW_MS)
    assert isinstance(request, OrderRequest), request
    assert (request.token_in, request.token_out) == ("SOL", UNLISTED_MINT)


@pytest.mark.parametrize("order_type", [{"orderType": "MARKET"}, {"orderType": "LIMIT", "limitPrice": 1.0}])
def test_other_orders_on_an_unlisted_pair_are_refused(order_type: dict[str, Any]) -> None:
    rejection = parse_order(body(tokenIn="SOL", tokenOut=UNLISTED_MINT, **order_type), NOW_MS)
    assert isinstance(rejection, Rejection)
    assert (STATUS_OF[rejection.kind], rejection.error) == (400, "Unsupported pair")


def test_a_pair_listed_at_runtime_is_tradable() -> None:
    raw = body(tokenIn="SOL", tokenOut=UNLISTED_MINT)
    assert isinstance(parse_order(raw, NOW_MS), Rejection)
    request = parse_order(raw, NOW_MS, extra_pairs=frozenset({("SOL", UNLISTED_MINT)}))
    assert isinstance(request, OrderRequest), request


@pytest.mark.parametrize(
    ("raw", "limit_price", "max_price", "expires_at"),
    [
        (body(orderType="LIMIT", limitPrice=160.0, maxPrice=9.0, expiresAt=int(NOW_MS) + 5), 160.0, None, NOW_MS + 5),
        (body(orderType="SNIPER", limitPrice=160.0, maxPrice=9.0), None, 9.0, None),
        (body(limitPrice=160.0, maxPrice=9.0), None, None, None),
    ],
    ids=["limit", "sniper", "market"],
)
def test_new_order_keeps_only_the_fields_of_its_type(
    raw: bytes, limit_price: float | None, max_price: float | None, expires_at: float | None
) -> None:
    request = parse_order(raw, NOW_MS)
    assert isinstance(request, OrderRequest), request
    order, first = new_order(request, NOW_MS)
    assert (order.limit_price, order.max_price, order.expires_at) == (limit_price, max_price, expires_at)
    assert order.status is OrderStatus.PENDING
    assert (order.cancel_requested, order.triggered_at) == (False, None)
    assert first.status is OrderStatus.PENDING


@pytest.mark.parametrize(
    ("token_in", "token_out", "pair"),
    [
        ("BONK", "USDT", "BONK/USDT"),
        ("usdt", "bonk", "USDT/BONK"),
        ("JUP", "WIF", "JUP/WIF"),
        (UNLISTED_MINT, "SOL", f"{UNLISTED_MINT}/SOL"),
    ],
)
def test_unsupported_pair_names_the_pair(token_in: str, token_out: str, pair: str) -> None:
    rejection = parse_order(body(tokenIn=token_in, tokenOut=token_out))
    assert isinstance(rejection, Rejection)
    assert (STATUS_OF[rejection.kind], rejection.error) == (400, "Unsupported pair")
    assert rejection.message == f"no venue trades the pair {pair}"
    assert rejection.details == [{"path": ["tokenIn"], "message": rejection.message, "code": "unsupported_pair"}]


def test_rejection_body_omits_empty_details() -> None:
    rejection = parse_order(b"{")
    assert isinstance(rejection, Rejection)
    assert set(rejection.body()) == {"error", "message"}


# --------------------------------------------------------------------------- new_order, fingerprint


def test_new_order_is_pending_with_a_well_formed_id() -> None:
    request = parse_order(body())
    assert isinstance(request, OrderRequest)
    order, first = new_order(request, NOW_MS)
    assert parse_order_id(order.order_id) == order.order_id
    assert order.order_id.startswith("order_1764000000000_")
    assert (order.status, order.submitted_at, order.amount, order.attempts) == (OrderStatus.PENDING, NOW_MS, 1.5, 0)
    assert (first.order_id, first.seq, first.status, first.at) == (order.order_id, 1, OrderStatus.PENDING, NOW_MS)


def test_fingerprint_depends_on_the_canonical_request_only() -> None:
    a, b, c = (parse_order(raw) for raw in (body(), body(tokenIn="sol", extra=1), body(amount=2)))
    assert isinstance(a, OrderRequest) and isinstance(b, OrderRequest) and isinstance(c, OrderRequest)
    assert request_fingerprint(a) == request_fingerprint(b)
    assert request_fingerprint(a) != request_fingerprint(c)


# --------------------------------------------------------------------------- OrderIntake.submit


@pytest.fixture
def request_() -> OrderRequest:
    parsed = parse_order(body())
    assert isinstance(parsed, OrderRequest)
    return parsed


async def test_submit_stores_then_queues(journal, queue, request_) -> None:
    outcome = await OrderIntake(journal, queue).submit(request_, NOW_MS)
    assert isinstance(outcome, Accepted)
    assert outcome.replayed is False
    assert [o.order_id for o in queue.accepted] == [outcome.order_id]
    assert journal.orders[outcome.order_id].status is OrderStatus.PENDING
    assert [e.seq for e in journal.events_for(outcome.order_id)] == [1]
    assert journal.calls == ["insert_orders"]


async def test_submit_with_the_journal_down_is_503_and_queues_nothing(journal, queue, request_) -> None:
    journal.fail(1, on=("insert_orders",))
    outcome = await OrderIntake(journal, queue).submit(request_, NOW_MS)
    assert isinstance(outcome, Rejection)
    assert (STATUS_OF[outcome.kind], outcome.error) == (503, "Service unavailable")
    assert "postgres is unavailable" in outcome.message
    assert queue.accepted == []
    assert journal.orders == {}


async def test_submit_with_the_queue_down_is_503_and_undoes_the_insert(fakes, journal, request_) -> None:
    queue = fakes.Queue(failing=True)
    outcome = await OrderIntake(journal, queue).submit(request_, NOW_MS, idempotency_key="key-1")
    assert isinstance(outcome, Rejection)
    assert (STATUS_OF[outcome.kind], outcome.error) == (503, "Service unavailable")
    assert "redis is unavailable" in outcome.message
    assert len(journal.deleted) == 1
    assert journal.orders == {}
    assert journal.events == []
    assert journal.keys == {}  # the key can be used again


async def test_submit_when_the_compensation_also_fails_is_still_503(fakes, journal, request_) -> None:
    queue = fakes.Queue(failing=True)
    journal.fail(1, on=("delete_orders",))
    outcome = await OrderIntake(journal, queue).submit(request_, NOW_MS)
    assert isinstance(outcome, Rejection)
    assert STATUS_OF[outcome.kind] == 503
    assert journal.calls == ["insert_orders", "delete_orders"]


async def test_same_idempotency_key_and_body_replays_the_original(journal, queue, request_) -> None:
    intake = OrderIntake(journal, queue)
    first = await intake.submit(request_, NOW_MS, idempotency_key="key-1")
    again = await intake.submit(request_, NOW_MS + 5_000, idempotency_key="key-1")
    assert isinstance(first, Accepted) and isinstance(again, Accepted)
    assert again == Accepted(first.order_id, replayed=True)
    assert len(queue.accepted) == 1
    assert len(journal.orders) == 1


async def test_same_idempotency_key_with_another_body_is_422(journal, queue, request_) -> None:
    intake = OrderIntake(journal, queue)
    other = parse_order(body(amount=99))
    assert isinstance(other, OrderRequest)
    first = await intake.submit(request_, NOW_MS, idempotency_key="key-1")
    clash = await intake.submit(other, NOW_MS, idempotency_key="key-1")
    assert isinstance(first, Accepted)
    assert isinstance(clash, Rejection)
    assert (STATUS_OF[clash.kind], clash.error) == (422, "Idempotency key reused")
    assert len(queue.accepted) == 1


@pytest.mark.parametrize(("stored_hash_matches", "expected"), [(True, "replay"), (False, 422)])
async def test_duplicate_request_from_the_journal(queue, request_, stored_hash_matches: bool, expected: object) -> None:
    fingerprint = request_fingerprint(request_)

    class DuplicateJournal:
        async def insert_orders(self, batch: list[NewOrder]) -> list[DuplicateRequest | None]:
            assert [n.request_hash for n in batch] == [fingerprint]
            return [DuplicateRequest("order_1763999999999_0badc0de", fingerprint if stored_hash_matches else "other")]

        async def delete_orders(self, order_ids: list[str]) -> None:
            raise AssertionError("nothing to undo")

    outcome = await OrderIntake(DuplicateJournal(), queue).submit(request_, NOW_MS, idempotency_key="k")
    if expected == "replay":
        assert outcome == Accepted("order_1763999999999_0badc0de", replayed=True)
    else:
        assert isinstance(outcome, Rejection)
        assert STATUS_OF[outcome.kind] == expected
    assert queue.accepted == []


async def test_no_idempotency_key_means_no_fingerprint(queue, request_) -> None:
    seen: list[tuple[str | None, str | None]] = []

    class RecordingJournal:
        async def insert_orders(self, batch: list[NewOrder]) -> list[DuplicateRequest | None]:
            seen.extend((n.idempotency_key, n.request_hash) for n in batch)
            return [None] * len(batch)

        async def delete_orders(self, order_ids: list[str]) -> None:
            raise AssertionError("nothing to undo")

    outcome = await OrderIntake(RecordingJournal(), queue).submit(request_, NOW_MS)
    assert isinstance(outcome, Accepted)
    assert seen == [(None, None)]
