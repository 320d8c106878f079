"""Bodies of the accounts routes (keys, limits, the trading state, readiness), split by direction."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from api.schemas import ErrorBody
from engine.accounts import Scope, valid_account
from engine.trading_state import parse_pair


def _account(raw: str) -> str:
    if not valid_account(raw):
        raise PydanticCustomError("account", "an account is 1-64 of a-z 0-9 _ . -, starting with a letter or digit")
    return raw


def _pair(raw: str) -> str:
    scope = parse_pair(raw)
    if scope is None:
        raise PydanticCustomError("pair", "a pair is two different tokens joined by /, such as SOL/USDC")
    return scope


AccountName = Annotated[str, Field(min_length=1, max_length=64, examples=["alice"]), AfterValidator(_account)]
PairName = Annotated[str, Field(min_length=3, max_length=100, examples=["SOL/USDC"]), AfterValidator(_pair)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- requests


class KeyCreate(_In):
    account: AccountName
    scopes: list[Scope] = Field(min_length=1, max_length=3, examples=[["trade"]], description="read, trade or admin (they nest)")


class TradingStateIn(_In):
    state: Literal["halted", "active"]
    reason: str = Field(min_length=1, max_length=500, description="Why: shown to refused clients and kept in the history")
    pair: PairName | None = Field(default=None, description="Only this pair (either direction); absent: the whole engine")


class LimitsIn(_In):
    """Overrides of the account's limits; a field left out (or null) takes the engine's default."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    rate_per_second: float | None = Field(default=None, alias="ratePerSecond", gt=0, le=1e6, allow_inf_nan=False)
    rate_burst: int | None = Field(default=None, alias="rateBurst", ge=1, le=10**7)
    max_open_orders: int | None = Field(default=None, alias="maxOpenOrders", ge=1, le=10**7)
    max_open_notional_usd: float | None = Field(default=None, alias="maxOpenNotionalUsd", gt=0, le=1e15, allow_inf_nan=False)
    max_order_notional_usd: float | None = Field(default=None, alias="maxOrderNotionalUsd", gt=0, le=1e15, allow_inf_nan=False)
    max_depth_share: float | None = Field(default=None, alias="maxDepthShare", gt=0, le=1000, allow_inf_nan=False)
    max_streams: int | None = Field(default=None, alias="maxStreams", ge=1, le=10**6)

    def overrides(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


# --------------------------------------------------------------------------- responses


class KeyView(BaseModel):
    keyId: str
    account: str
    scopes: list[str]
    createdAt: int = Field(description="Epoch ms")
    createdBy: str
    revokedAt: int | None = Field(default=None, description="Epoch ms; absent while the key is active")


class KeyCreated(BaseModel):
    keyId: str
    key: str = Field(description="The secret key: shown in this answer only, stored only as a hash")
    account: str
    scopes: list[str]
    createdAt: int = Field(description="Epoch ms")


class KeyList(BaseModel):
    keys: list[KeyView]


class LimitValues(BaseModel):
    ratePerSecond: float
    rateBurst: int
    maxOpenOrders: int
    maxOpenNotionalUsd: float
    maxOrderNotionalUsd: float
    maxDepthShare: float
    maxStreams: int


class LimitsView(BaseModel):
    account: str
    limits: LimitValues = Field(description="What applies to the account now")
    overrides: list[str] = Field(description="The fields set for this account; the others are the engine's defaults")
    openOrders: int | None = Field(default=None, description="Orders not yet terminal (reservations included)")
    openNotionalUsd: float | None = None


class ScopeStateView(BaseModel):
    state: Literal["halted", "active"]
    reason: str
    changedBy: str
    changedAt: int = Field(description="Epoch ms")
    pair: str | None = None


class TradingStateView(BaseModel):
    state: Literal["halted", "active"] = Field(description="The whole engine's state")
    reason: str | None = None
    changedBy: str | None = None
    changedAt: int | None = None
    haltedPairs: list[ScopeStateView]
    history: list[ScopeStateView] = Field(description="The latest changes, newest first")


class Ready(BaseModel):
    status: str = Field(examples=["ok", "degraded"])
    timestamp: int = Field(description="Epoch ms")
    checks: dict[str, str]
    venues: dict[str, dict[str, Any]] = Field(description="Each venue's circuit breaker: closed, open or half_open")
    dispatcher: Literal["active", "standby", "unknown"] = Field(
        default="unknown", description="Whether this engine's dispatcher holds the dispatch lease of its stores (else it stands by)"
    )
    failing: list[str] | None = None


class Live(BaseModel):
    status: str = Field(examples=["ok"])


DESCRIPTIONS = {
    400: "Validation failed",
    401: "No key, or an unknown or revoked one (WWW-Authenticate: Bearer)",
    403: "The key lacks the route's scope",
    404: "No such key",
    422: "Risk check failed",
    429: "Too many requests (Retry-After, RateLimit-*)",
    503: "Trading halted, the queue is full (Retry-After), or PostgreSQL or Redis is unavailable",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entry of these error statuses (their body is :class:`api.schemas.ErrorBody`)."""
    return {status: {"model": ErrorBody, "description": DESCRIPTIONS[status]} for status in statuses}
