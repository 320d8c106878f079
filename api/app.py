"""The FastAPI application: routers, error handlers, and the OpenAPI document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

from api import errors
from api.auth import LazyCORS
from api.middleware import RequestContext
from api.routes import admin, chain, events, health, keys, market, metrics, orders, sim, stream
from engine.models import OrderRequest

CONSOLE = Path(__file__).with_name("console")
"""The live web console (static files: no build step), served at /console/."""


class EngineApp(FastAPI):
    """FastAPI with :class:`api.middleware.RequestContext` outermost: outside even the handler of unexpected
    errors, so a 500 carries its request id too; inside it, the order intake's fast path
    (:class:`api.routes.orders.FastExecute`)."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestContext(orders.FastExecute(super().build_middleware_stack()))


def create_app() -> FastAPI:
    app = EngineApp(
        title="Order Execution Engine",
        version="0.1.0",
        description="Routes and executes Solana DEX swaps (Raydium, Meteora; simulated) and streams each order's lifecycle.",
    )
    errors.install(app)
    app.add_middleware(LazyCORS)
    routers = (
        orders.router,
        stream.router,
        events.router,
        market.router,
        chain.router,
        keys.router,
        admin.router,
        sim.router,
        health.router,
    )
    for router in (*routers, metrics.router):
        app.include_router(router)
    app.mount("/console", StaticFiles(directory=CONSOLE, html=True), name="console")

    def openapi() -> dict[str, Any]:
        """The generated document plus the order body, which the route parses itself (to own its size and errors)."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            body_schema = OrderRequest.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
            for name, definition in body_schema.pop("$defs", {}).items():
                schema["components"]["schemas"][name] = definition
            schema["components"]["schemas"]["OrderRequest"] = body_schema
            _no_default_422(schema)
            _auth_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _auth_errors(schema: dict[str, Any]) -> None:
    """Every operation that takes a key may answer 401 (no or a bad key) and 403 (a key without the scope)."""
    error_body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if operation.get("security"):
                responses = operation.setdefault("responses", {})
                responses.setdefault("401", {"description": "No key, or an unknown or revoked one", **error_body})
                responses.setdefault("403", {"description": "The key lacks the scope", **error_body})


def _no_default_422(schema: dict[str, Any]) -> None:
    """FastAPI documents a 422 for every route with parameters; this API answers bad parameters with
    400 (:mod:`api.errors`), so that 422 never happens: document the 400 instead."""
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            default = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if default.get("$ref", "").endswith("/HTTPValidationError"):
                del responses["422"]
                responses.setdefault("400", {"description": "Validation failed", "content": {"application/json": {"schema": error_body}}})
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
