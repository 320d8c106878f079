"""The engine's error answers as exceptions, each carrying the server's error body."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of everything the client raises on purpose."""


class ConnectionFailed(ClientError):
    """The engine could not be reached (or the connection broke and could not be resumed)."""


class ApiError(ClientError):
    """An error answer: ``status`` and the body's ``error``, ``message`` and ``details``."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.error = str(body.get("error", "HTTP error"))
        self.message = str(body.get("message") or "")
        self.details: list[dict[str, Any]] = list(body.get("details") or [])
        self.headers = headers or {}
        super().__init__(f"{status} {self.error}: {self.message}" if self.message else f"{status} {self.error}")

    @property
    def retry_after_s(self) -> float | None:
        raw = self.headers.get("retry-after")
        try:
            return float(raw) if raw is not None else None
        except ValueError:
            return None


class BadRequest(ApiError):
    """400: the request is malformed or breaks a rule (see ``details``)."""


class Unauthorized(ApiError):
    """401: no key, or an unknown or revoked one."""


class Forbidden(ApiError):
    """403: the key lacks the scope."""


class NotFound(ApiError):
    """404: no such order (or not yours)."""


class Conflict(ApiError):
    """409 or 422: too late to cancel, or an Idempotency-Key reused with another body."""


class RiskDenied(ApiError):
    """422 "Risk check failed": ``details`` carry the codes (max_notional, ...)."""


class TooManyRequests(ApiError):
    """429: over a limit; ``retry_after_s`` says when to try again."""


class Unavailable(ApiError):
    """503: a dependency is down or the queue is full; nothing was accepted."""


class TradingHalted(Unavailable):
    """503 "Trading halted": the kill switch is on for the order's scope."""


def error_for(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> ApiError:
    """The exception class for an error answer."""
    error = str(body.get("error", ""))
    kind: type[ApiError]
    if status == 422 and error == "Risk check failed":
        kind = RiskDenied
    elif status == 503 and error == "Trading halted":
        kind = TradingHalted
    else:
        kind = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 422: Conflict, 429: TooManyRequests}.get(
            status, Unavailable if status >= 500 else ApiError
        )
    return kind(status, body, headers)
