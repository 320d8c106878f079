"""All configuration, from environment variables prefixed ``OEE_`` (or a ``.env`` file). Loaded once."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from engine.retry import RetryPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OEE_", env_file=".env", extra="ignore")

    # Where to listen
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Dependencies: unset means "local default if something listens there, else embedded"
    redis_url: str | None = None
    database_url: str | None = None
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

    watch_interval_ms: float = Field(default=250.0, gt=0, description="How often waiting LIMIT/SNIPER orders are checked")
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
