"""Building the settlement of an executor from the settings: the chain (the ChainNode actor's embedded
chain, or JSON-RPC when ``OEE_CHAIN_RPC_URL`` is set), the store, the assembler and the venues."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from engine.adapters.settlement_store import PostgresSettlementStore
from engine.chain import Chain
from engine.clock import SystemClock
from engine.models import VenueName
from engine.settings import Settings
from engine.settlement import Faucet, Settlement, SettlingVenue
from settlement.assembler import ChainAssembler, Funding
from settlement.faults import checkpoint_for
from settlement.keys import Keyring


def chain_of(settings: Settings, node: Any) -> tuple[Chain, Faucet | None]:
    """The chain port, and the faucet when the chain is the embedded one."""
    if settings.chain_rpc_url:
        from settlement.rpc import RpcChain

        return RpcChain(settings.chain_rpc_url), None
    from actors.chain_node import ChainClient

    client = ChainClient(node)
    return client, client


def settlement_for(settings: Settings, pool: asyncpg.Pool, venues: Mapping[VenueName, SettlingVenue], node: Any) -> Settlement:
    chain, faucet = chain_of(settings, node)
    assembler = ChainAssembler(Keyring(settings.chain_key_seed), venues, chain, faucet, Funding(wallet_usd=settings.wallet_funding_usd))
    return Settlement(
        chain=chain,
        store=PostgresSettlementStore(pool),
        assembler=assembler,
        clock=SystemClock(),
        poll_s=settings.chain_poll_ms / 1000,
        resend_s=settings.chain_resend_ms / 1000,
        checkpoint=checkpoint_for(settings),
    )
