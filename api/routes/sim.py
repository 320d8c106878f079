"""Simulation admin (``OEE_SIM_ADMIN=true`` only): list a pool on a venue, move a pool's price."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.auth import Admin
from api.deps import ReadyEdge
from api.errors import EdgeError, error_response
from api.schemas import SimPoolIn, SimPoolListed, SimPriceMoved, SimPriceMoveIn, errors

router = APIRouter(prefix="/api/sim", tags=["simulation"])


def _venue(here: ReadyEdge, name: str) -> Any:
    """The venue actor's handle; 404 while simulation admin is off."""
    if not here.settings.sim_admin:
        raise EdgeError(404, "Not found", "simulation admin routes are disabled (OEE_SIM_ADMIN=false)")
    handle = here.venues.get(name)
    if handle is None:
        raise EdgeError(400, "Validation failed", f"unknown venue {name}")
    return handle


@router.post(
    "/pools",
    status_code=201,
    response_model=SimPoolListed,
    responses=errors(400, 404),
    summary="Simulation only: list a new pool (a token launch)",
)
async def list_pool(body: SimPoolIn, here: ReadyEdge, who: Admin) -> JSONResponse:
    handle = _venue(here, body.venue)
    try:
        await handle.list_pool.remote(body.base, body.quote, body.reserve_base, body.reserve_quote)
    except Exception as exc:  # the venue is not simulated
        cause = getattr(exc, "cause", None) or exc
        return error_response(400, "Validation failed", f"cannot list {body.base}/{body.quote} on {body.venue}: {cause}"[:300])
    await here.refresh_pairs(force=True)
    listed = SimPoolListed(venue=body.venue, pair=f"{body.base}/{body.quote}", listed_at=time.time() * 1000)
    return JSONResponse(listed.model_dump(by_alias=True), status_code=201)


@router.post(
    "/price", response_model=SimPriceMoved, responses=errors(400, 404), summary="Simulation only: move a pool's price by a percentage"
)
async def move_price(body: SimPriceMoveIn, here: ReadyEdge, who: Admin) -> JSONResponse:
    handle = _venue(here, body.venue)
    try:
        spot = await handle.move_price.remote(body.base, body.quote, body.percent)
    except Exception as exc:  # the venue has no such pool
        cause = getattr(exc, "cause", None) or exc
        return error_response(400, "Validation failed", f"cannot move {body.base}/{body.quote} on {body.venue}: {cause}"[:300])
    return JSONResponse(SimPriceMoved(venue=body.venue, pair=f"{body.base}/{body.quote}", spot_price=spot).model_dump(by_alias=True))
