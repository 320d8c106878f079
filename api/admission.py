"""Submitting a parsed order: the trading state, the pre-trade risk checks, admission, then durable intake.

In that order, each answer before anything is stored:

* 503 ``Trading halted`` if the order's scope is halted;
* 422 ``Risk check failed`` with one detail per broken rule (``max_notional``, ``max_depth_share``,
  ``max_open_notional``);
* 422 ``Insufficient funds`` when the account's wallet holds less of ``tokenIn`` than the order sells
  (:class:`engine.balance_view.BalanceView`: the chain is asked unless a fresh view plainly covers the
  order; 503 if the chain does not answer);
* 429 ``Too many requests`` over the account's rate or open-order cap, with ``Retry-After`` and the
  ``RateLimit-*`` headers; 503 with ``Retry-After`` when the engine's queue is full;
* then intake as before (503 if a store is down), and 202 with the ``RateLimit-*`` headers.

An order the admission script reserved but intake did not store (refused, or an idempotent replay of an
earlier one) is released at once.
"""

from __future__ import annotations

import contextlib
import logging

from fastapi.responses import JSONResponse

from api.auth import unauthorized
from api.deps import Edge
from api.errors import error_response, rejected
from api.wallets import Shortfall
from engine.accounts import AccountLimits, Principal
from engine.admission import OPEN_ORDERS_RETRY_S, Admission, Verdict, retry_after_queue, retry_after_rate
from engine.errors import StoreUnavailable
from engine.ids import new_order_id
from engine.instruments import ORDERS_SUBMITTED
from engine.intake import Rejection
from engine.logs import bind
from engine.models import OrderRequest
from engine.risk import assess, open_notional_denial
from engine.settlement import from_base_units, to_base_units
from engine.tokens import decimals_of, mint_of
from engine.trading_state import ScopeState, pair_scope

log = logging.getLogger("api.admission")


def halted(halt: ScopeState) -> JSONResponse:
    return error_response(503, "Trading halted", halt.reason)


def risk_failed(details: list[dict[str, object]]) -> JSONResponse:
    codes = ", ".join(str(d["code"]) for d in details)
    return JSONResponse(
        {"error": "Risk check failed", "message": f"the order breaks {len(details)} risk rule(s): {codes}", "details": details},
        status_code=422,
    )


async def submit(here: Edge, who: Principal, request: OrderRequest, key: str | None, now_ms: float) -> JSONResponse:
    guard = here.guard
    halt = (await guard.trading_states()).halt_for(request.token_in, request.token_out)
    if halt is not None:
        return halted(halt)
    limits = await guard.limits_for(who.account)
    assessment = assess(request.token_in, request.token_out, request.amount, await guard.market.view(), limits)
    if not assessment.passed or assessment.notional_usd is None:
        return risk_failed([d.detail() for d in assessment.denials])
    decimals = decimals_of(mint_of(request.token_in))
    try:
        held = await here.balances.reserve(who.account, request.token_in, to_base_units(request.amount, decimals))
    except Exception:  # the chain did not answer: the order is not accepted blind
        log.warning("wallet check failed", exc_info=True)
        return error_response(503, "Service unavailable", "the chain is unavailable; try again")
    if held is not None:
        return error_response(422, "Insufficient funds", str(Shortfall(request.token_in, from_base_units(held, decimals), request.amount)))
    order_id = new_order_id(int(now_ms))
    scope = pair_scope(request.token_in, request.token_out)
    admission = await guard.admit(who, scope, limits, order_id, assessment.notional_usd)
    if not admission.admitted:
        return refused(admission, here, limits, assessment.notional_usd)
    try:
        outcome = await here.intake.submit(
            request, now_ms, key, account=who.account, order_id=order_id, notional_usd=assessment.notional_usd
        )
    except BaseException:
        await _release(here, who, order_id)
        raise
    if isinstance(outcome, Rejection) or outcome.order_id != order_id:
        await _release(here, who, order_id)  # not stored, or the key's earlier order answered instead
    headers = admission.rate_headers()
    if isinstance(outcome, Rejection):
        response = rejected(outcome)
        response.headers.update(headers)
        return response
    bind(order_id=outcome.order_id)
    message = f"order accepted; follow it at /api/orders/{outcome.order_id}/status"
    if outcome.replayed:
        message = "order already accepted for this Idempotency-Key"
    else:
        ORDERS_SUBMITTED.inc(str(request.order_type))
    return JSONResponse({"orderId": outcome.order_id, "status": "pending", "message": message}, status_code=202, headers=headers)


def refused(admission: Admission, here: Edge, limits: AccountLimits, order_usd: float) -> JSONResponse:
    verdict = admission.verdict
    if verdict is Verdict.REVOKED:
        raise unauthorized("the API key is not valid (unknown or revoked)", presented=True)
    if verdict is Verdict.HALTED and admission.halt is not None:
        return halted(admission.halt)
    if verdict is Verdict.QUEUE_FULL:
        drain = here.settings.rate_limit_per_minute / 60
        after = retry_after_queue(admission.queued, here.settings.max_queued_orders, drain)
        message = f"the engine holds {admission.queued} queued orders, its most (OEE_MAX_QUEUED_ORDERS); try again later"
        return error_response(503, "Service unavailable", message, headers={"Retry-After": str(after)})
    if verdict is Verdict.OPEN_NOTIONAL:
        denial = open_notional_denial(admission.open_usd, order_usd, limits)
        if denial is not None:
            return risk_failed([denial.detail()])
    headers = admission.rate_headers()
    if verdict is Verdict.RATE_LIMITED:
        headers["Retry-After"] = str(retry_after_rate(admission.rate_per_s, admission.tokens))
        message = f"at most {admission.rate_per_s:g} orders per second ({admission.burst} at once) for this account"
    else:  # TOO_MANY_OPEN
        headers["Retry-After"] = str(OPEN_ORDERS_RETRY_S)
        message = f"this account has {admission.open_orders} open orders, its most; wait for some to finish"
    return error_response(429, "Too many requests", message, headers=headers)


async def _release(here: Edge, who: Principal, order_id: str) -> None:
    with contextlib.suppress(StoreUnavailable):
        await here.guard.admission.release(who.account, order_id)
