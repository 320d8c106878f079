"""Market data for screens: every venue's price for a pair now (the console's live chart)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.auth import Reader
from api.deps import ReadyEdge
from api.errors import error_response
from api.schemas import VenuePrices, errors
from engine.models import DexQuote, TokenName
from engine.wire import dex, ms

router = APIRouter(prefix="/api/market", tags=["market"])

FRESH_S = 1.0
"""Prices asked of the venues are reused this long: screens polling together cost the venues one quote."""
_cache: dict[tuple[str, str, float], tuple[float, dict[str, Any]]] = {}


@router.get("/prices", response_model=VenuePrices, responses=errors(400), summary="Every venue's price for a pair now")
async def prices(here: ReadyEdge, who: Reader, tokenIn: TokenName, tokenOut: TokenName, amount: float = 1.0) -> JSONResponse:
    if not 0 < amount <= 1e12 or tokenIn == tokenOut:
        return error_response(400, "Validation failed", "amount must be in (0, 1e12] and the tokens must differ")
    key = (tokenIn, tokenOut, amount)
    cached = _cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < FRESH_S:
        return JSONResponse(cached[1])
    names = list(here.venues)
    answers = await asyncio.gather(*(here.venues[n].quote.remote(tokenIn, tokenOut, amount) for n in names), return_exceptions=True)
    venues = []
    for name, answer in zip(names, answers, strict=True):
        if isinstance(answer, DexQuote):
            venues.append({"dex": dex(name), "price": answer.spot_price, "netPrice": answer.price, "liquidity": answer.liquidity})
        else:
            cause = getattr(answer, "cause", None) or answer
            venues.append({"dex": dex(name), "error": str(cause)[:200]})
    body = {"tokenIn": tokenIn, "tokenOut": tokenOut, "amount": amount, "timestamp": ms(time.time() * 1000), "venues": venues}
    _cache[key] = (time.monotonic(), body)
    return JSONResponse(body)
