"""All configuration, from environment variables prefixed ``OEE_`` (or a ``.env`` file). Loaded once."""

from __future__ import annotations

import ipaddress
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from engine.accounts import AccountLimits
from engine.retry import RetryPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OEE_", env_file=".env", extra="ignore")

    # Where to listen
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Dependencies: unset means "local default if something listens there, else embedded". The URLs carry
    # passwords: secret types, so they never show in a repr, a log line or an error body (read them with reveal()).
    redis_url: SecretStr | None = None
    database_url: SecretStr | None = None
    data_dir: Path = Path(".oee-data")
    embedded: Literal["auto", "always"] = Field(
        default="auto", description="auto: embedded Redis/PostgreSQL only if none is configured or listening locally; always: embedded"
    )
    redis_prefix: str = Field(default="oee:", description="Prefix of every Redis key the engine writes")
    ray_address: str | None = Field(default=None, description="Join this Ray cluster instead of starting one")
    ray_num_cpus: int | None = Field(default=None, description="CPUs of the local Ray started by the engine")
    ray_temp_dir: Path | None = Field(default=None, description="Temp/session dir of the local Ray (keep it short)")

    # Admission
    max_concurrent_orders: int = Field(default=10, ge=1)
    rate_limit_per_minute: float = Field(default=100.0, gt=0)
    rate_limit_burst: int | None = Field(
        default=None, ge=1, description="Most order starts at one moment; default: the whole per-minute allowance"
    )
    executor_pool_size: int = Field(default=1, ge=1, description="OrderExecutor actors in the cluster: one per node is efficient")
    batch_window_ms: float = Field(
        default=40.0,
        ge=0,
        le=100,
        description="Under load, actor calls to one place go at most once per window, carrying everything queued meanwhile; "
        "a call after a quiet spell goes at once. The window starts at 5 ms (or this, if less) and doubles up to this "
        "while calls keep coming. 0: every call at once (more CPU per order under load)",
    )

    # Execution
    max_attempts: int = Field(default=3, ge=1)
    retry_base_delay_ms: float = Field(default=500.0, ge=0)
    retry_max_delay_ms: float = Field(default=8000.0, ge=0)
    max_price_impact_pct: float = Field(default=30.0, gt=0, le=100)

    # Venues
    venues: Annotated[list[str], NoDecode] = Field(
        default=["raydium", "meteora"],
        min_length=1,
        description="Venues to route to: built-in names, or name=package.module:factory (comma-separated; venues/registry.py)",
    )

    # Simulated venues
    quote_latency_ms: float = Field(default=200.0, ge=0)
    swap_latency_ms: Annotated[tuple[float, float], NoDecode] = (2000.0, 3000.0)
    fault_rate: float = Field(default=0.0, ge=0, le=1)
    sim_seed: int = 7
    vault_refresh_ms: float = Field(
        default=100.0, gt=0, description="How often a simulated venue reads its pools' vault balances from the chain"
    )
    chain_rpc_url: str | None = Field(default=None, description="A Solana JSON-RPC endpoint; unset: the embedded LiteSVM chain")
    chain_rpc_faucet: bool = Field(default=False, description="The RPC node funds new accounts (oee_ensureAccounts: the test chain server)")
    chain_blockhash_ttl_s: float = Field(default=60.0, gt=0, description="How long a blockhash stays valid on the embedded chain")
    chain_slot_ms: float = Field(default=400.0, gt=0, description="One block of the embedded chain")
    chain_key_seed: str = Field(default="oee-dev-keys", description="The secret the wallet and venue keypairs derive from")
    chain_poll_ms: float = Field(default=50.0, gt=0, description="How often a sent transaction's status is asked")
    chain_resend_ms: float = Field(default=2000.0, gt=0, description="How often unconfirmed bytes are sent again while valid")
    wallet_funding_usd: float = Field(
        default=1_000_000.0, ge=0, description="What the embedded chain gives a new wallet of each listed token"
    )
    chain_fault_step: str | None = Field(default=None, description="Tests: a protocol step to fail after (engine.settlement.STEPS)")
    chain_fault_rate: float = Field(default=0.0, ge=0, le=1, description="Tests: the chance of the fault at that step")
    chain_fault_mode: Literal["raise", "exit", "hang"] = Field(
        default="raise", description="Tests: raise (the run dies), exit (its process dies) or hang (it stops there, for a kill -9)"
    )
    chain_fault_marker: str | None = Field(default=None, description="Tests: a file touched when a run hangs at the fault")

    watch_interval_ms: float = Field(
        default=250.0,
        gt=0,
        description="How often waiting LIMIT/SNIPER orders are checked against every venue's pools; venues that push pool "
        "changes fire them at once, this poll is the fallback (and catches expiry)",
    )
    trigger_max_age_ms: float = Field(
        default=500.0,
        ge=0,
        description="How old a pool state may be for the watcher to decide on it when a push comes, and for a fired order "
        "to swap on it instead of quoting again (settlement still re-prices at the venue, within the order's slippage). "
        "0: a fired order always quotes again",
    )
    sim_admin: bool = Field(default=False, description="Enable /api/sim/* (list a pool, move a price): simulation only")

    # Ingress
    ingress_mode: Literal["proxy", "haproxy"] = Field(
        default="haproxy", description="haproxy: Serve's HAProxy ingress (~5x the intake here); proxy: Serve's HTTP proxy actor"
    )
    haproxy_dir: Path | None = Field(
        default=None, description="Directory for HAProxy's config and sockets (keep it short); default: a new /tmp/oee-haproxy-*"
    )
    ingress_replicas: int = Field(default=1, ge=1)
    ingress_max_replicas_per_node: int | None = Field(default=None, ge=1, description="Spread ingress replicas over nodes")
    max_ongoing_requests: int = Field(default=2000, ge=1)
    max_body_bytes: int = Field(default=16 * 1024, ge=256)
    access_log: bool = Field(default=False, description="Serve's per-request access log lines (costs CPU on every request)")
    request_metrics: bool = Field(
        default=False,
        description="HAProxy mode: Serve's per-request metrics (one syslog line per request, parsed by its HAProxy manager actor)",
    )
    ray_metrics: bool = Field(
        default=False,
        description="Ray's own metrics (Prometheus export through each node's dashboard agent), for a Ray this engine starts",
    )
    metrics_push_s: float = Field(
        default=5.0, gt=0, le=300, description="How often each ingress replica sends its metrics to the collector (GET /metrics)"
    )
    ingress_drain_s: float = Field(
        default=2.0,
        ge=0,
        description="HAProxy mode: how long a stopping replica keeps accepting so HAProxy can take it out (Serve's default: 30 s)",
    )
    log_level: str = "INFO"

    # One dispatcher per set of stores (docs/decisions/013-run-fencing.md)
    dispatch_lease_ttl_s: float = Field(
        default=6.0, gt=0, le=300, description="How long the dispatcher's lease lasts unless renewed: a standby takes over after it"
    )
    dispatch_lease_renew_s: float = Field(
        default=1.0, gt=0, le=60, description="How often the dispatcher renews (or, on standby, asks for) its lease"
    )
    dispatch_holder: str = Field(
        default_factory=lambda: f"engine-{uuid.uuid4().hex[:12]}",
        min_length=1,
        max_length=200,
        description="This engine's name as the lease's holder. Default: new at each start (a restarted engine waits out its old "
        "lease). Set it to a name only one running engine has (a pod name) to take over its own lease at once after a restart",
    )

    # Accounts and limits (docs/operations.md, "Limits"; docs/decisions/010-accounts-and-limits.md)
    admin_key: SecretStr | None = Field(
        default=None,
        description="The admin key (at least 32 characters). Set: every API call but health and docs needs a key. Unset: open "
        "local mode (every order is the account 'local'), allowed only on a loopback OEE_HOST",
    )
    account_rate_per_second: float = Field(default=50.0, gt=0, le=1e6, description="Submissions per second per account")
    account_rate_burst: int = Field(default=100, ge=1, le=10**7, description="Submissions an account may make at once")
    account_max_open_orders: int = Field(default=1000, ge=1, le=10**7, description="Orders not yet terminal per account")
    account_max_open_notional_usd: float = Field(default=10_000_000.0, gt=0, description="USD value of an account's open orders")
    account_max_streams: int = Field(default=100, ge=1, le=10**6, description="Open WebSockets per account")
    max_queued_orders: int = Field(default=100_000, ge=1, description="Queue depth (whole engine) over which submissions get 503")
    max_order_notional_usd: float = Field(default=1_000_000.0, gt=0, description="USD value of one order, at the pools' mid")
    max_depth_share: float = Field(
        default=0.1, gt=0, le=1000, description="Largest order as a share of the best pool's output-side depth (0.1 = 10 %)"
    )
    market_max_age_s: float = Field(
        default=300.0, gt=0, description="A MARKET order not started this long after it was accepted ends expired"
    )
    max_streams_per_replica: int | None = Field(
        default=None,
        ge=1,
        description="Open WebSockets per ingress replica; default: max_ongoing_requests minus a tenth, so streams never take "
        "the requests HTTP intake needs",
    )
    ws_max_message_bytes: int = Field(default=4096, ge=64, le=1 << 20, description="Largest message a client may send on a stream")
    ws_messages_per_second: float = Field(default=5.0, gt=0, description="Messages a client may send per second on a stream")
    ws_message_burst: int = Field(default=10, ge=1, description="Messages a client may send at once on a stream")
    key_cache_s: float = Field(
        default=30.0, ge=0, description="How long a replica trusts a cached key without hearing from the revocation channel"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[], description="Browser origins allowed to call the API (comma-separated, exact: https://app.example.com)"
    )
    venue_breaker_window_s: float = Field(default=30.0, gt=0, description="Venue circuit breaker: the error-rate window")
    venue_breaker_min_calls: int = Field(default=20, ge=1, description="Venue circuit breaker: calls in the window before it may open")
    venue_breaker_error_rate: float = Field(default=0.5, gt=0, le=1, description="Venue circuit breaker: error rate that opens it")
    venue_breaker_cooldown_s: float = Field(default=10.0, gt=0, description="Venue circuit breaker: how long it stays open")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        """Accept ``https://a.example,https://b.example`` as well as a list; origins carry no trailing slash."""
        if isinstance(value, str):
            return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        return value

    @field_validator("admin_key")
    @classmethod
    def _strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError(
                "OEE_ADMIN_KEY must be at least 32 characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    def protection_problem(self) -> str | None:
        """Why the engine must not start as configured: open (no admin key) on an address others can reach."""
        if self.admin_key is None and not is_loopback(self.host):
            return (
                f"refusing to start: OEE_HOST={self.host} is not a loopback address and OEE_ADMIN_KEY is not set, so anyone "
                "who can reach the engine could trade. Set OEE_ADMIN_KEY to a secret of at least 32 characters (for example "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`), or bind OEE_HOST=127.0.0.1 for local use."
            )
        return None

    def stream_cap_per_replica(self) -> int:
        """Streams one replica takes: ``max_streams_per_replica``, else max_ongoing_requests minus a tenth."""
        if self.max_streams_per_replica is not None:
            return min(self.max_streams_per_replica, self.max_ongoing_requests)
        return max(1, self.max_ongoing_requests - max(1, self.max_ongoing_requests // 10))

    def account_limits(self) -> AccountLimits:
        """Every account's limits unless an admin overrides them for one."""
        return AccountLimits(
            rate_per_second=self.account_rate_per_second,
            rate_burst=self.account_rate_burst,
            max_open_orders=self.account_max_open_orders,
            max_open_notional_usd=self.account_max_open_notional_usd,
            max_order_notional_usd=self.max_order_notional_usd,
            max_depth_share=self.max_depth_share,
            max_streams=self.account_max_streams,
        )

    def with_store_urls(self, redis_url: str, database_url: str) -> Settings:
        """These settings with resolved store URLs (kept secret)."""
        return self.model_copy(update={"redis_url": SecretStr(redis_url), "database_url": SecretStr(database_url)})

    @property
    def lease_scope(self) -> str:
        """What the dispatch lease is for: this database and Redis prefix (credentials left out)."""
        from urllib.parse import urlsplit

        redis = urlsplit(self.redis_url.get_secret_value()) if self.redis_url else None
        where = f"{redis.hostname}:{redis.port}{redis.path}" if redis else "embedded"
        return f"redis={where} prefix={self.redis_prefix}"

    @property
    def start_burst(self) -> int:
        """The burst the start limit allows: ``rate_limit_burst``, by default the whole minute's allowance."""
        return self.rate_limit_burst if self.rate_limit_burst is not None else max(1, round(self.rate_limit_per_minute))

    @field_validator("swap_latency_ms", mode="before")
    @classmethod
    def _range(cls, value: object) -> object:
        """Accept ``2500`` or ``2000-3000`` (a uniform range), in milliseconds."""
        if isinstance(value, int | float):
            return (float(value), float(value))
        if isinstance(value, str):
            low, _, high = value.partition("-")
            return (float(low), float(high or low))
        return value

    @field_validator("swap_latency_ms")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] < 0 or value[1] < value[0]:
            raise ValueError("swap latency must be 'MS' or 'LOW-HIGH' with 0 <= LOW <= HIGH")
        return value

    @field_validator("venues", mode="before")
    @classmethod
    def _listed(cls, value: object) -> object:
        """Accept ``raydium,meteora`` as well as a list."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay_s=self.retry_base_delay_ms / 1000,
            max_delay_s=self.retry_max_delay_ms / 1000,
            jitter=0.1,
        )


def is_loopback(host: str) -> bool:
    """Is ``host`` a loopback address (``127.0.0.0/8``, ``::1``) or ``localhost``?"""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def reveal(value: SecretStr | str | None) -> str | None:
    """A secret setting's plain value (None stays None)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
