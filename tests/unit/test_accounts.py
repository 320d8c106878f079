"""Keys, scopes, principals and limits (engine.accounts); admission verdict arithmetic (engine.admission)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.accounts import (
    ADMIN_PRINCIPAL,
    LOCAL_PRINCIPAL,
    AccountLimits,
    Principal,
    Scope,
    admin_key_matches,
    granted,
    hash_secret,
    new_key,
    split_key,
    valid_account,
)
from engine.admission import rate_limit_headers, retry_after_queue, retry_after_rate
from engine.settings import Settings

NOW = 1_764_000_000_000.0


def test_a_new_key_is_shown_once_and_stored_only_as_a_hash() -> None:
    record, plaintext = new_key("alice", frozenset({Scope.TRADE}), NOW, "admin")
    parsed = split_key(plaintext)
    assert parsed is not None
    key_id, secret = parsed
    assert key_id == record.key_id and plaintext.startswith(f"oee_{key_id}_")
    assert record.secret_hash == hash_secret(secret) and secret not in repr(record)
    assert record.verify(secret) and not record.verify(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert record.public() == {"keyId": key_id, "account": "alice", "scopes": ["trade"], "createdAt": NOW, "createdBy": "admin"}


def test_a_revoked_key_never_verifies() -> None:
    record, plaintext = new_key("alice", frozenset({Scope.READ}), NOW, "admin")
    secret = plaintext.split("_", 2)[2]
    from dataclasses import replace

    assert not replace(record, revoked_at=NOW + 1).verify(secret)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "Bearer x",
        "oee_",
        "oee_0123456789abcdef_",
        "oee_0123456789ABCDEF_" + "a" * 43,  # upper-case id
        "oee_0123456789abcde_" + "a" * 43,  # short id
        "xyz_0123456789abcdef_" + "a" * 43,
        "oee_0123456789abcdef_" + "a" * 42,
        "oee_0123456789abcdef_" + "a" * 44,
        "oee_0123456789abcdef_" + "a" * 42 + "!",
        "oee_0123456789abcdef_" + "a" * 10_000,
    ],
)
def test_malformed_keys_are_refused_before_any_lookup(raw: str) -> None:
    assert split_key(raw) is None


@settings(deadline=None, max_examples=100, database=None)
@given(st.text(max_size=120))
def test_split_key_never_raises(raw: str) -> None:
    split_key(raw)


def test_scopes_nest() -> None:
    assert granted({Scope.READ}) == {Scope.READ}
    assert granted({Scope.TRADE}) == {Scope.READ, Scope.TRADE}
    assert granted({Scope.ADMIN}) == set(Scope)
    reader = Principal("alice", frozenset({Scope.READ}), "k")
    assert reader.may(Scope.READ) and not reader.may(Scope.TRADE) and not reader.is_admin
    assert reader.sees("alice") and not reader.sees("bob")
    assert ADMIN_PRINCIPAL.sees("bob") and LOCAL_PRINCIPAL.may(Scope.ADMIN) and LOCAL_PRINCIPAL.account == "local"


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("alice", True),
        ("desk-7.eu_1", True),
        ("0", True),
        ("Alice", False),
        ("", False),
        ("-x", False),
        ("a" * 65, False),
        ("a b", False),
        ("a:b", False),
        ("é", False),
    ],
)
def test_account_names(name: str, ok: bool) -> None:
    assert valid_account(name) is ok


def test_the_admin_key_is_compared_as_a_hash() -> None:
    key = "k" * 40
    assert admin_key_matches(key, key) and not admin_key_matches(key + "x", key) and not admin_key_matches("", key)


def test_limits_default_from_settings_and_take_overrides() -> None:
    limits = Settings(_env_file=None).account_limits()
    assert (limits.rate_per_second, limits.rate_burst, limits.max_open_orders, limits.max_streams) == (50.0, 100, 1000, 100)
    assert (limits.max_order_notional_usd, limits.max_depth_share, limits.max_open_notional_usd) == (1e6, 0.1, 1e7)
    custom = limits.with_overrides({"rate_per_second": 2.0, "max_open_orders": 3, "nonsense": 1, "max_streams": None})
    assert (custom.rate_per_second, custom.max_open_orders, custom.max_streams) == (2.0, 3, 100)
    assert custom.overridden == {"rate_per_second", "max_open_orders"}
    assert set(AccountLimits.FIELDS) == {f for f in AccountLimits.__dataclass_fields__ if f != "overridden"}


def test_settings_keep_secrets_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OEE_DATABASE_URL", "postgresql://oee:hunter2@db:5432/oee")
    monkeypatch.setenv("OEE_REDIS_URL", "redis://:hunter2@cache:6379/0")
    monkeypatch.setenv("OEE_ADMIN_KEY", "s" * 40)
    settings = Settings(_env_file=None)
    assert "hunter2" not in repr(settings) and "s" * 40 not in repr(settings) and "hunter2" not in str(settings.model_dump())
    from engine.adapters.stores import urls

    assert urls(settings) == ("postgresql://oee:hunter2@db:5432/oee", "redis://:hunter2@cache:6379/0")
    resolved = settings.with_store_urls("redis://r/0", "postgresql://p/oee")
    assert urls(resolved) == ("postgresql://p/oee", "redis://r/0") and "postgresql://p" not in repr(resolved)


def test_a_short_admin_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OEE_ADMIN_KEY", "short")
    with pytest.raises(ValueError, match="at least 32"):
        Settings(_env_file=None)


def test_cors_origins_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OEE_CORS_ORIGINS", "https://a.example/, https://b.example:8443")
    assert Settings(_env_file=None).cors_origins == ["https://a.example", "https://b.example:8443"]


def test_streams_leave_room_for_http_on_a_replica() -> None:
    assert Settings(_env_file=None).stream_cap_per_replica() == 1800
    assert Settings(_env_file=None, max_ongoing_requests=100, max_streams_per_replica=500).stream_cap_per_replica() == 100


# --------------------------------------------------------------------------- admission arithmetic


def test_rate_limit_headers() -> None:
    assert rate_limit_headers(100, 50.0, 100.0) == {
        "RateLimit-Limit": "100",
        "RateLimit-Remaining": "100",
        "RateLimit-Reset": "0",
        "RateLimit-Policy": "100;w=2",
    }
    assert rate_limit_headers(100, 50.0, 0.4)["RateLimit-Remaining"] == "0"
    assert rate_limit_headers(100, 50.0, 0.4)["RateLimit-Reset"] == "2"
    assert rate_limit_headers(5, 1.0, -3.0)["RateLimit-Reset"] == "5"


@pytest.mark.parametrize(("rate", "tokens", "after"), [(50.0, 0.99, 1), (1.0, 0.0, 1), (0.1, 0.5, 5), (0.01, 0.0, 100)])
def test_retry_after_counts_whole_seconds_to_the_next_token(rate: float, tokens: float, after: int) -> None:
    assert retry_after_rate(rate, tokens) == after


def test_retry_after_for_a_full_queue() -> None:
    assert retry_after_queue(100, 100, 100 / 60) == 1
    assert retry_after_queue(200, 100, 100 / 60) == 60
    assert retry_after_queue(110, 100, 1.0) == 11
