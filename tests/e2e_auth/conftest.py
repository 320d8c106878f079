"""Protected-mode tier: the engine started as a user starts it (``python -m runtime``) with OEE_ADMIN_KEY
set, on a database and Redis prefix of its own, driven over real HTTP and WebSocket.

Two ingress replicas behind HAProxy, so every rule is shown holding across replicas, not within one
process. Each test makes its own accounts (random names): tests share the engine but not their limits.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_REDIS_DB, Services, TestStores, scratch_stores
from tests.engine_process import FAST_TIMINGS, EngineProcess, running_engine

ADMIN_KEY = secrets.token_urlsafe(32)
ORIGIN = "https://app.example"

FAST = {
    "OEE_ADMIN_KEY": ADMIN_KEY,
    **FAST_TIMINGS,
    "OEE_CORS_ORIGINS": ORIGIN,
    "OEE_INGRESS_REPLICAS": "2",
}


def own_stores(services: Services, tag: str) -> Iterator[TestStores]:
    """A database and a Redis prefix of their own (dropped afterwards): a halt left by a failed test
    here never reaches another tier's engine."""
    yield from scratch_stores(services, f"auth_{tag}", TEST_REDIS_DB)


def start_engine(stores: TestStores, env: dict[str, str]) -> Iterator[EngineProcess]:
    yield from running_engine(stores, env)


@pytest.fixture(scope="package")
def auth_stores(services: Services) -> Iterator[TestStores]:
    yield from own_stores(services, "main")


@pytest.fixture(scope="package")
def engine(auth_stores: TestStores) -> Iterator[EngineProcess]:
    yield from start_engine(auth_stores, FAST)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Account:
    """An account with one key, and a client that presents it."""

    name: str
    key: str
    key_id: str
    client: httpx.AsyncClient


class Accounts:
    """Makes accounts (random names) with keys of the scopes asked for, through the admin API."""

    def __init__(self, engine: EngineProcess, admin: httpx.AsyncClient) -> None:
        self.engine = engine
        self.admin = admin
        self.made: list[Account] = []

    async def new(self, prefix: str = "acct", scopes: tuple[str, ...] = ("trade",), **limits: Any) -> Account:
        name = f"{prefix}-{secrets.token_hex(3)}"
        created = await self.admin.post("/api/keys", json={"account": name, "scopes": list(scopes)})
        assert created.status_code == 201, created.text
        body = created.json()
        if limits:
            response = await self.admin.put(f"/api/admin/accounts/{name}/limits", json=limits)
            assert response.status_code == 200, response.text
        client = httpx.AsyncClient(base_url=self.engine.url, headers=bearer(body["key"]), timeout=30)
        account = Account(name, body["key"], body["keyId"], client)
        self.made.append(account)
        return account

    async def close(self) -> None:
        for account in self.made:
            await account.client.aclose()


@pytest.fixture
async def admin(engine: EngineProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=engine.url, headers=bearer(ADMIN_KEY), timeout=30) as client:
        yield client


@pytest.fixture
async def accounts(engine: EngineProcess, admin: httpx.AsyncClient) -> AsyncIterator[Accounts]:
    made = Accounts(engine, admin)
    try:
        yield made
    finally:
        await made.close()


async def resume_everything(admin: httpx.AsyncClient) -> None:
    """Whatever a test halted, resumed (a failed test must not leave the engine halted for the next)."""
    state = (await admin.get("/api/admin/trading-state")).json()
    for halted in state.get("haltedPairs", []):
        await admin.put("/api/admin/trading-state", json={"state": "active", "reason": "test cleanup", "pair": halted["pair"]})
    if state.get("state") == "halted":
        await admin.put("/api/admin/trading-state", json={"state": "active", "reason": "test cleanup"})
