"""A typed Python client of the order execution engine (sync and asyncio) and the ``oee`` command.

from clients import Client
with Client("http://127.0.0.1:8000", api_key="oee_...") as oee:
    accepted = oee.submit("SOL", "USDC", 1.5)
    for update in oee.follow(accepted.order_id):
        print(update.status, update.message)
"""

from clients.aio import AsyncClient
from clients.errors import (
    ApiError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    RiskDenied,
    TooManyRequests,
    TradingHalted,
    Unauthorized,
    Unavailable,
)
from clients.models import ActiveOrder, DexQuote, OrderAccepted, OrderPage, RoutingDecision, StatusUpdate, StreamEvent
from clients.sync import Client

__all__ = [
    "ActiveOrder",
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "DexQuote",
    "Forbidden",
    "NotFound",
    "OrderAccepted",
    "OrderPage",
    "RiskDenied",
    "RoutingDecision",
    "StatusUpdate",
    "StreamEvent",
    "TooManyRequests",
    "TradingHalted",
    "Unauthorized",
    "Unavailable",
]
