"""The chain port: what the engine needs of a Solana cluster to settle swaps, and nothing more.

A recent blockhash with its last valid block height, sending signed bytes, signature statuses (with
the block height read first, so "expired" is never judged on a newer answer than the status), token
balances and a landed transaction's token balance changes and memo. Adapters: the embedded LiteSVM
(:mod:`settlement.embedded`, owned by the ChainNode actor) and JSON-RPC (:mod:`settlement.rpc`).
Plain data only, so the core decides without importing a Solana library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from engine.errors import EngineError


class ChainUnavailable(EngineError):
    """The chain (its node, or the RPC endpoint) did not answer; what was asked may be asked again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"chain unavailable: {self.reason}"


@dataclass(frozen=True, slots=True)
class RecentBlockhash:
    blockhash: str
    last_valid_height: int
    """The last block height at which a transaction built on this blockhash may still land."""


class TxState(StrEnum):
    LANDED = "landed"
    """Executed successfully: the transfers are final."""
    FAILED = "failed"
    """Executed with an error: it moved nothing and its signature can never land again."""
    UNKNOWN = "unknown"
    """The chain has not seen it (yet)."""


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Signature states and the block height read just before them."""

    block_height: int
    states: tuple[TxState, ...]


class SendOutcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    """The chain has this signature already (landed or failed): nothing new happened."""
    BLOCKHASH_NOT_FOUND = "blockhash_not_found"
    """The blockhash is unknown or expired: these bytes are refused (now; ask the height before concluding)."""
    REJECTED = "rejected"
    """Refused before execution for another reason (bad signature, malformed)."""


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: SendOutcome
    error: str | None = None
    signature: str | None = None


@dataclass(frozen=True, slots=True)
class TokenChange:
    """One token account's balance before and after a transaction, in base units."""

    account: str
    owner: str
    mint: str
    pre: int
    post: int

    @property
    def delta(self) -> int:
        return self.post - self.pre


@dataclass(frozen=True, slots=True)
class ChainTx:
    """A transaction as the chain has it."""

    signature: str
    slot: int
    signers: tuple[str, ...]
    token_changes: tuple[TokenChange, ...]
    memo: str | None
    error: str | None = None


class Chain(Protocol):
    async def latest_blockhash(self) -> RecentBlockhash: ...

    async def send(self, raw: bytes) -> SendResult:
        """Send a signed, serialized transaction."""
        ...

    async def statuses(self, signatures: Sequence[str]) -> StatusReport: ...

    async def token_balances(self, owner: str, mints: Sequence[str]) -> dict[str, int]:
        """``owner``'s balance of each mint (its associated token account), base units; 0 for none."""
        ...

    async def transaction(self, signature: str) -> ChainTx | None: ...

    async def transactions_with_memo(self, signer: str, memo: str) -> list[ChainTx]:
        """Every executed transaction ``signer`` signed whose memo is ``memo`` (an explorer's search)."""
        ...
