"""The one mapping from domain outcomes to HTTP: refusals and domain errors become status codes and
:class:`api.schemas.ErrorBody` bodies here and nowhere else."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import Refusal, StoreUnavailable
from engine.intake import Rejection

STATUS_OF: dict[Refusal, int] = {
    Refusal.INVALID: 400,
    Refusal.CONFLICT: 422,
    Refusal.UNAVAILABLE: 503,
}

_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


class EdgeError(Exception):
    """An answer the edge gives on its own (a body too large, a route turned off); raised by routes."""

    def __init__(
        self, status: int, error: str, message: str, details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, error, message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details or []
        self.headers = headers or {}


def body(error: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"error": error, "message": message}
    if details:
        out["details"] = details
    return out


def error_response(
    status: int, error: str, message: str, details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body(error, message, details), status_code=status, headers=headers)


def rejected(rejection: Rejection) -> JSONResponse:
    return error_response(STATUS_OF[rejection.kind], rejection.error, rejection.message, rejection.details)


def not_found(what: str = "order") -> JSONResponse:
    return error_response(404, "Not found", f"{what} not found")


def unavailable(exc: StoreUnavailable) -> JSONResponse:
    """Names the store, never its address or the exception (they may carry hosts and credentials)."""
    return error_response(503, "Service unavailable", f"{exc.store} is unavailable; try again")


def install(app: FastAPI) -> None:
    """Register the handlers: every error the framework or the stores raise gets an ErrorBody."""

    @app.exception_handler(EdgeError)
    async def _edge(_: Request, exc: EdgeError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.message, exc.details, exc.headers)

    @app.exception_handler(StoreUnavailable)
    async def _store(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return unavailable(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, "Not found" if exc.status_code == 404 else "HTTP error", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"path": [p for i, p in enumerate(e["loc"]) if not (i == 0 and p in _LOCATIONS)], "message": e["msg"], "code": e["type"]}
            for e in exc.errors()
        ]
        return error_response(400, "Validation failed", "the request is not valid", details)
