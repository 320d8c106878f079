"""The JSON-RPC adapter, contract-tested against a small JSON-RPC server over the embedded chain
(tests/chain_rpc_server.py): the same answers as the chain it fronts, and the whole protocol over it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from engine.chain import SendOutcome, TxState
from engine.models import OrderStatus
from settlement.faults import InjectedFault
from settlement.rpc import RpcChain
from tests.chain_rpc_server import make_app
from tests.chain_scan import landed_per_order
from tests.settlement.conftest import Rig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def rpc(rig: Rig) -> AsyncIterator[RpcChain]:
    runner = web.AppRunner(make_app(rig.chain))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    chain = RpcChain(f"http://127.0.0.1:{port}/")
    yield chain
    await chain.close()
    await runner.cleanup()


async def test_an_order_settles_over_json_rpc(rig: Rig, rpc: RpcChain) -> None:
    [order_id] = await rig.submit(1, amount=3.0)
    order = await rig.workflow(chain=rpc).run(order_id)
    assert order is not None and order.status is OrderStatus.CONFIRMED
    through_rpc = await rpc.transaction(order.tx_hash or "")
    direct = await rig.chain.transaction(order.tx_hash or "")
    assert through_rpc is not None and direct is not None
    assert through_rpc.memo == direct.memo == order_id
    assert through_rpc.signers == direct.signers
    assert sorted(through_rpc.token_changes, key=lambda c: c.account) == sorted(direct.token_changes, key=lambda c: c.account)
    assert (await rpc.statuses([order.tx_hash or ""])).states == (TxState.LANDED,)
    wallet = direct.signers[0]
    mints = [c.mint for c in direct.token_changes]
    assert await rpc.token_balances(wallet, mints) == await rig.chain.token_balances(wallet, mints)
    assert await rpc.transaction("1" * 64) is None
    assert (await rpc.statuses(["1" * 64])).states == (TxState.UNKNOWN,)


async def test_rpc_tells_duplicates_and_expired_blockhashes_apart(rig: Rig, rpc: RpcChain) -> None:
    [order_id] = await rig.submit(1)
    held: list[bytes] = []
    hold_back = rig.hold_back(held)  # the run dies before sending

    with pytest.raises(InjectedFault):
        await rig.workflow(hold_back, chain=rpc).run(order_id)
    assert (await rpc.send(held[0])).outcome is SendOutcome.ACCEPTED
    assert (await rpc.send(held[0])).outcome is SendOutcome.DUPLICATE
    recent = await rpc.latest_blockhash()
    assert recent.last_valid_height > (await rpc.statuses([])).block_height
    rig.clock_offset.offset += 61.0
    [second] = await rig.submit(1)
    held.clear()
    with pytest.raises(InjectedFault):
        await rig.workflow(hold_back, chain=rpc).run(second)
    rig.clock_offset.offset += 61.0
    assert (await rpc.send(held[0])).outcome is SendOutcome.BLOCKHASH_NOT_FOUND
    order = await rig.workflow(chain=rpc).run(second)
    assert order is not None and order.status is OrderStatus.CONFIRMED
    assert landed_per_order(rig.chain.transactions()) == {order_id: 1, second: 1}
