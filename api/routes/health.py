"""Health: /livez (the process answers), /readyz (its dependencies and venues), /health (kept for
existing clients: the dependencies).

Anyone may call them. A failing dependency is named (``"redis": "down"``), but hosts, ports and
exception text are shown only to an admin key (or in open local mode): they can carry addresses and
credentials.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.account_schemas import Live, Ready
from api.auth import Anyone
from api.deps import ReadyEdge
from api.schemas import Health
from engine import wire
from engine.adapters.dispatch_lease import DispatchLease

router = APIRouter(tags=["health"])

PROBE_TIMEOUT_S = 2.0


async def _probe(probe: Awaitable[object], detailed: bool) -> str:
    try:
        await asyncio.wait_for(probe, PROBE_TIMEOUT_S)
    except Exception as exc:  # every failure is reported, none is raised
        return f"down: {type(exc).__name__}: {exc}"[:200] if detailed else "down"
    return "ok"


async def _checks(here: ReadyEdge, detailed: bool) -> dict[str, str]:
    names = ("redis", "postgres", "ray")
    probes = (here.orders.ping(), here.journal.ping(), here.hub.stats.remote())
    results = await asyncio.gather(*(_probe(p, detailed) for p in probes))
    return dict(zip(names, results, strict=True))


async def _dispatcher(here: ReadyEdge) -> Literal["active", "standby", "unknown"]:
    """``active`` if this engine's dispatcher holds the dispatch lease of its stores, ``standby`` if
    another engine does, ``unknown`` if PostgreSQL cannot say."""
    settings = here.settings
    lease = DispatchLease(here.journal.pool, settings.lease_scope, settings.dispatch_holder, settings.dispatch_lease_ttl_s)
    try:
        held = await asyncio.wait_for(lease.held_here(), PROBE_TIMEOUT_S)
    except Exception:  # reported, never raised
        return "unknown"
    return "active" if held else "standby"


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "A dependency is down"}},
    summary="Readiness of Redis, PostgreSQL and Ray",
)
async def health(here: ReadyEdge, who: Anyone) -> JSONResponse:
    checks, dispatcher = await asyncio.gather(_checks(here, detailed=who is not None and who.is_admin), _dispatcher(here))
    failing = [name for name, state in checks.items() if state != "ok"]
    report = Health(
        status="degraded" if failing else "ok",
        timestamp=wire.ms(time.time() * 1000),
        checks=checks,
        dispatcher=dispatcher,
        failing=failing or None,
    )
    return JSONResponse(report.model_dump(exclude_none=True), status_code=503 if failing else 200)


@router.get("/livez", response_model=Live, summary="The process answers (no dependency is asked)")
async def livez() -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _breaker(handle: Any, detailed: bool) -> dict[str, Any]:
    try:
        state: dict[str, Any] = await asyncio.wait_for(handle.breaker_state.remote(), PROBE_TIMEOUT_S)
    except Exception:  # the venue's actor is restarting: routing waits for it, so report it as such
        return {"state": "unreachable"}
    if not detailed:
        state.pop("lastError", None)
    return state


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: {"model": Ready, "description": "A dependency is down, or no venue can be routed to"}},
    summary="Readiness: Redis, PostgreSQL, Ray, and each venue's circuit breaker",
)
async def readyz(here: ReadyEdge, who: Anyone) -> JSONResponse:
    detailed = who is not None and who.is_admin
    checks, breakers, dispatcher = await asyncio.gather(
        _checks(here, detailed), asyncio.gather(*(_breaker(handle, detailed) for handle in here.venues.values())), _dispatcher(here)
    )
    venues = dict(zip(here.venues, breakers, strict=True))
    failing = [name for name, state in checks.items() if state != "ok"]
    if venues and all(v["state"] in ("open", "unreachable") for v in venues.values()):
        failing.append("venues")  # nothing to route to
    body = Ready(
        status="degraded" if failing else "ok",
        timestamp=wire.ms(time.time() * 1000),
        checks=checks,
        venues=venues,
        dispatcher=dispatcher,
        failing=failing or None,
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=503 if failing else 200)
