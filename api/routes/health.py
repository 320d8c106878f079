"""Health: readiness of Redis, PostgreSQL and the engine's actors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ReadyEdge
from api.schemas import Health
from engine import wire

router = APIRouter(tags=["health"])

PROBE_TIMEOUT_S = 2.0


async def _probe(probe: Awaitable[object]) -> str:
    try:
        await asyncio.wait_for(probe, PROBE_TIMEOUT_S)
    except Exception as exc:  # every failure is reported, none is raised
        return f"down: {type(exc).__name__}: {exc}"[:200]
    return "ok"


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "A dependency is down"}},
    summary="Readiness of Redis, PostgreSQL and Ray",
)
async def health(here: ReadyEdge) -> JSONResponse:
    names = ("redis", "postgres", "ray")
    results = await asyncio.gather(_probe(here.orders.ping()), _probe(here.journal.ping()), _probe(here.hub.stats.remote()))
    checks = dict(zip(names, results, strict=True))
    failing = [name for name, state in checks.items() if state != "ok"]
    report = Health(status="degraded" if failing else "ok", timestamp=wire.ms(time.time() * 1000), checks=checks, failing=failing or None)
    return JSONResponse(report.model_dump(exclude_none=True), status_code=503 if failing else 200)
