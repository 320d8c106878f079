"""Structured logs: one JSON object per line, with whatever ``extra=`` a call site passes, and the
request, order and account being handled (``requestId``, ``orderId``, ``account``) where known."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

_STANDARD = set(vars(logging.makeLogRecord({})))

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
"""The HTTP or WebSocket request being handled (set by :mod:`api.middleware`)."""
ORDER_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("order_id", default=None)
"""The order being handled: intake after acceptance, a stream, an executor's run of it."""
ACCOUNT: contextvars.ContextVar[str | None] = contextvars.ContextVar("account", default=None)
"""The account the request or order belongs to, where known."""


def bind(*, order_id: str | None = None, account: str | None = None) -> None:
    """Name the order (and account) this task is handling: its log lines carry them from now on."""
    if order_id is not None:
        ORDER_ID.set(order_id)
    if account is not None:
        ACCOUNT.set(account)


def _forget() -> None:
    REQUEST_ID.set(None)
    ORDER_ID.set(None)
    ACCOUNT.set(None)


def detached() -> contextvars.Context:
    """A copy of the current context without its request, order and account: for a task that works for
    many (a batch flush), whose log lines must not carry the first caller's."""
    context = contextvars.copy_context()
    context.run(_forget)
    return context


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            body["requestId"] = request_id
        order_id = ORDER_ID.get() or getattr(record, "order_id", None)
        if order_id is not None:
            body["orderId"] = order_id
        account = ACCOUNT.get() or getattr(record, "account", None)
        if account is not None:
            body["account"] = account
        body.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def setup_logging(level: str = "INFO") -> None:
    """Route the engine's loggers to stderr as JSON lines (idempotent, safe in every Ray worker)."""
    root = logging.getLogger("engine")
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    for name in ("actors", "api", "runtime", "venues", "serve_app"):
        other = logging.getLogger(name)
        other.addHandler(handler)
        other.setLevel(level.upper())
        other.propagate = False
