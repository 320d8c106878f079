"""The installed ``oee`` command and the Python client against the running engine: exit codes a
script can rely on, JSON output, the live follow, cancel, health, the account stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from clients import Client, NotFound
from tests.conftest import ROOT
from tests.engine_process import EngineProcess

OEE = Path(sys.executable).with_name("oee")


def oee(engine: EngineProcess, *args: str, timeout_s: float = 180.0, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed command (importing this checkout) against the engine."""
    environment = {**os.environ, "OEE_URL": engine.url, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([str(OEE), *args], env=environment, capture_output=True, text=True, timeout=timeout_s, check=False)


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_submit_and_follow_exits_0_when_confirmed(engine: EngineProcess) -> None:
    done = oee(engine, "submit", "SOL", "USDC", "1.5", "--follow", "--json")
    assert done.returncode == 0, done.stderr
    accepted, *updates = lines(done)
    assert accepted["status"] == "pending"
    assert [u["status"] for u in updates] == ["pending", "routing", "building", "submitted", "confirmed"]
    confirmed = updates[-1]
    assert confirmed["status"] == "confirmed" and confirmed["data"]["txHash"] and confirmed["data"]["executionAmount"] > 0
    listed = oee(engine, "orders", "--json", "--limit", "10")
    assert listed.returncode == 0 and accepted["orderId"] in {o["orderId"] for o in lines(listed)}
    shown = oee(engine, "show", accepted["orderId"], "--json")
    assert shown.returncode == 0 and lines(shown)[0]["status"] == "confirmed"


def test_a_cancelled_order_exits_1_and_an_unknown_one_2(engine: EngineProcess) -> None:
    submitted = oee(engine, "submit", "SOL", "USDC", "1", "--type", "LIMIT", "--limit-price", "1000000", "--json")
    assert submitted.returncode == 0, submitted.stderr
    order_id = lines(submitted)[0]["orderId"]
    cancelled = oee(engine, "cancel", order_id, "--json")
    assert cancelled.returncode == 0 and lines(cancelled)[0]["status"] in ("cancelled", "cancelling")
    followed = oee(engine, "follow", order_id, "--json")
    assert followed.returncode == 1 and lines(followed)[-1]["status"] == "cancelled"
    unknown = oee(engine, "follow", "order_1796000000000_ffffffff", "--json")
    assert unknown.returncode == 2
    refused = oee(engine, "submit", "SOL", "SOL", "1", "--json")
    assert refused.returncode == 2 and "tokenIn and tokenOut must differ" in refused.stderr


def test_health_and_an_unreachable_engine(engine: EngineProcess) -> None:
    healthy = oee(engine, "health", "--json")
    assert healthy.returncode == 0 and lines(healthy)[0]["status"] == "ok"
    unreachable = oee(engine, "health", OEE_URL="http://127.0.0.1:9")
    assert unreachable.returncode == 2 and "cannot reach" in unreachable.stderr


def test_the_live_view_shows_the_route_and_the_fill(engine: EngineProcess) -> None:
    done = oee(engine, "submit", "SOL", "USDC", "2", "--follow", TTY_INTERACTIVE="1", TTY_COMPATIBLE="1", COLUMNS="160")
    assert done.returncode == 0, done.stderr
    screen = done.stdout
    assert "route:" in screen and "RAYDIUM" in screen and "METEORA" in screen and "selected" in screen
    assert "fill:" in screen and "confirmed" in screen


def test_events_tails_the_account_stream(engine: EngineProcess) -> None:
    with Client(engine.url) as client:
        page = client.list_orders(limit=1)
        accepted = client.submit("SOL", "USDC", 1.0)
        final = client.wait(accepted.order_id)
        assert final.status == "confirmed" and final.exchange_id in ("RAYDIUM", "METEORA")
        try:
            client.get("order_1796000000000_ffffffff")
        except NotFound as exc:
            assert exc.status == 404
        else:
            raise AssertionError("an unknown order must raise NotFound")
    assert page.orders is not None
    tail = oee(engine, "events", "--since", "0", "--count", "5")
    assert tail.returncode == 0, tail.stderr
    events = lines(tail)
    assert len(events) == 5 and [e["eventId"] for e in events] == sorted(e["eventId"] for e in events)


def test_tx_wallet_and_landed_read_the_chain(engine: EngineProcess) -> None:
    done = oee(engine, "submit", "SOL", "USDC", "0.5", "--follow", "--json")
    assert done.returncode == 0, done.stderr
    accepted, *updates = lines(done)
    signature = updates[-1]["data"]["txHash"]
    tx = oee(engine, "tx", signature)
    assert tx.returncode == 0, tx.stderr
    landed = json.loads(tx.stdout)
    assert landed["signature"] == signature and landed["orderId"] == accepted["orderId"] and landed["succeeded"]
    wallet = oee(engine, "wallet")
    assert wallet.returncode == 0 and json.loads(wallet.stdout)["address"] == landed["signers"][0]
    found = oee(engine, "landed", accepted["orderId"])
    assert found.returncode == 0 and [t["signature"] for t in json.loads(found.stdout)["transactions"]] == [signature]
    unknown = oee(engine, "tx", "1" * 64)
    assert unknown.returncode == 2 and "not found" in unknown.stderr
