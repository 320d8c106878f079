"""Response schemas of the chain routes (:mod:`api.routes.chain`): what the chain holds, in human units
beside the base units the chain counts in."""

from __future__ import annotations

from pydantic import BaseModel, Field


class TokenBalance(BaseModel):
    token: str = Field(examples=["SOL"])
    mint: str = Field(examples=["So11111111111111111111111111111111111111112"])
    decimals: int = Field(examples=[9])
    amount: float = Field(description="Human units", examples=[6666.666666667])
    baseUnits: str = Field(description="Integer base units, as a string (u64)", examples=["6666666666667"])


class WalletPublic(BaseModel):
    account: str = Field(examples=["local"])
    address: str = Field(description="The wallet's public key (base58); it signs and pays for the account's swaps")
    balances: list[TokenBalance]


class TokenChangePublic(BaseModel):
    account: str = Field(description="The token account")
    owner: str
    mint: str
    token: str | None = Field(description="The listed symbol of the mint, if any")
    pre: str = Field(description="Base units before")
    post: str = Field(description="Base units after")
    change: float = Field(description="Human units (post - pre)")


class ChainTxPublic(BaseModel):
    signature: str = Field(description="The transaction's base58 signature (an order's txHash)")
    slot: int
    signers: list[str]
    memo: str | None = Field(description="The orderId the transaction settles")
    orderId: str | None = Field(description="The memo, if it names an order")
    succeeded: bool
    error: str | None = None
    tokenChanges: list[TokenChangePublic]


class OrderTransactions(BaseModel):
    orderId: str
    transactions: list[ChainTxPublic] = Field(description="Every transaction on the chain whose memo names the order (at most one landed)")
