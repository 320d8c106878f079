"""The chain: the caller's wallet, a transaction by signature, and what landed for an order.

What these routes return is read from the chain (the embedded LiteSVM, or JSON-RPC), never from the
engine's own records, so a client can check an order's ``txHash`` against the ledger that settled it.
"""

from __future__ import annotations

import logging
import re

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.auth import Reader
from api.chain_schemas import ChainTxPublic, OrderTransactions, TokenBalance, TokenChangePublic, WalletPublic
from api.deps import ReadyEdge
from api.errors import error_response, not_found
from api.schemas import errors
from api.wallets import symbol_of
from engine.chain import ChainTx
from engine.ids import parse_order_id
from engine.queries import find_order
from engine.settlement import from_base_units
from engine.tokens import BY_MINT, decimals_of

router = APIRouter(tags=["chain"])
log = logging.getLogger("api.chain")


def chain_unavailable() -> JSONResponse:
    log.warning("chain call failed", exc_info=True)
    return error_response(503, "Service unavailable", "the chain is unavailable; try again")


_SIGNATURE = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{64,88}$")
"""A base58 ed25519 signature: 64 bytes are 64 to 88 characters."""


def public_tx(tx: ChainTx) -> ChainTxPublic:
    changes = [
        TokenChangePublic(
            account=c.account,
            owner=c.owner,
            mint=c.mint,
            token=symbol_of(c.mint),
            pre=str(c.pre),
            post=str(c.post),
            change=from_base_units(c.delta, decimals_of(c.mint)),
        )
        for c in tx.token_changes
        if c.delta != 0
    ]
    order_id = tx.memo if tx.memo and parse_order_id(tx.memo) else None
    return ChainTxPublic(
        signature=tx.signature,
        slot=tx.slot,
        signers=list(tx.signers),
        memo=tx.memo,
        orderId=order_id,
        succeeded=tx.error is None,
        error=tx.error,
        tokenChanges=changes,
    )


@router.get(
    "/api/wallet", response_model=WalletPublic, responses=errors(503), summary="The caller's wallet and its balances, from the chain"
)
async def wallet(here: ReadyEdge, who: Reader) -> JSONResponse:
    wallets = here.wallets
    try:
        held = await wallets.balances(who.account)
    except Exception:
        return chain_unavailable()
    balances = [
        TokenBalance(
            token=BY_MINT[mint].symbol,
            mint=mint,
            decimals=BY_MINT[mint].decimals,
            amount=from_base_units(units, BY_MINT[mint].decimals),
            baseUnits=str(units),
        )
        for mint, units in held.items()
        if mint in BY_MINT
    ]
    body = WalletPublic(account=who.account, address=wallets.address(who.account), balances=balances)
    return JSONResponse(body.model_dump())


@router.get(
    "/api/chain/tx/{signature}",
    response_model=ChainTxPublic,
    responses=errors(400, 404, 503),
    summary="A transaction as the chain has it: slot, signers, token balance changes, the memo with the orderId",
)
async def transaction(signature: str, here: ReadyEdge, who: Reader) -> JSONResponse:
    if not _SIGNATURE.match(signature):
        return error_response(400, "Validation failed", "signature must be a base58 transaction signature (64 to 88 characters)")
    try:
        tx = await here.wallets.chain.transaction(signature)
    except Exception:
        return chain_unavailable()
    if tx is None:
        return not_found("transaction")
    return JSONResponse(public_tx(tx).model_dump())


@router.get(
    "/api/chain/orders/{order_id}",
    response_model=OrderTransactions,
    responses=errors(404, 503),
    summary="Every transaction on the chain that settles this order (searched by the wallet's signatures and the memo)",
)
async def order_transactions(order_id: str, here: ReadyEdge, who: Reader) -> JSONResponse:
    oid = parse_order_id(order_id)
    order = await find_order(oid, here.orders, here.journal) if oid is not None else None
    if order is None or not who.sees(order.account):
        return not_found()
    try:
        found = await here.wallets.order_transactions(order.account, order.order_id)
    except Exception:
        return chain_unavailable()
    body = OrderTransactions(orderId=order.order_id, transactions=[public_tx(tx) for tx in found])
    return JSONResponse(body.model_dump())
