"""Administration (admin keys only): the kill switch and per-account limits."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic.alias_generators import to_camel

from api.account_schemas import AccountName, LimitsIn, LimitsView, ScopeStateView, TradingStateIn, TradingStateView, responses
from api.auth import Admin
from api.deps import ReadyEdge
from engine.accounts import AccountLimits
from engine.trading_state import GLOBAL, TradingState

router = APIRouter(prefix="/api/admin", tags=["admin"])

HISTORY = 50


@router.get(
    "/trading-state", response_model=TradingStateView, responses=responses(401, 403, 503), summary="The kill switch: what is halted"
)
async def trading_state(here: ReadyEdge, who: Admin) -> JSONResponse:
    _, states, _ = await here.guard.trading.current()
    history = await here.guard.trading.history(HISTORY)
    whole = states.globally
    body: dict[str, Any] = {"state": TradingState.HALTED.value if whole else TradingState.ACTIVE.value}
    if whole is not None:
        body.update(reason=whole.reason, changedBy=whole.changed_by, changedAt=round(whole.changed_at))
    else:
        last = next((c.state for c in history if c.state.scope == GLOBAL), None)
        if last is not None:
            body.update(reason=last.reason, changedBy=last.changed_by, changedAt=round(last.changed_at))
    body["haltedPairs"] = [s.public() for scope, s in sorted(states.halted.items()) if scope != GLOBAL]
    body["history"] = [c.state.public() for c in history]
    return JSONResponse(body)


@router.put(
    "/trading-state",
    response_model=ScopeStateView,
    responses=responses(400, 401, 403, 503),
    summary="Halt or resume trading, for the whole engine or one pair; recorded with who and why",
)
async def set_trading_state(body: TradingStateIn, here: ReadyEdge, who: Admin) -> JSONResponse:
    changed = await here.guard.change_trading(body.pair or GLOBAL, TradingState(body.state), body.reason, who.key_id)
    return JSONResponse(changed.public())


async def _limits_view(here: ReadyEdge, account: str, limits: AccountLimits) -> dict[str, Any]:
    count, usd = await here.guard.admission.open_orders(account)
    return {
        "account": account,
        "limits": limits.public(),
        "overrides": sorted(to_camel(name) for name in limits.overridden),
        "openOrders": count,
        "openNotionalUsd": round(usd, 2),
    }


@router.get("/accounts/{account}/limits", response_model=LimitsView, responses=responses(400, 401, 403, 503), summary="An account's limits")
async def account_limits(account: AccountName, here: ReadyEdge, who: Admin) -> JSONResponse:
    return JSONResponse(await _limits_view(here, account, await here.guard.limits_for(account)))


@router.put(
    "/accounts/{account}/limits",
    response_model=LimitsView,
    responses=responses(400, 401, 403, 503),
    summary="Override an account's limits (fields left out take the defaults)",
)
async def set_account_limits(account: AccountName, body: LimitsIn, here: ReadyEdge, who: Admin) -> JSONResponse:
    limits = await here.guard.set_limits(account, body.overrides(), who.key_id)
    return JSONResponse(await _limits_view(here, account, limits))
