"""The embedded chain: LiteSVM (an in-process Solana runtime with SPL Token and Memo) run as a validator.

Blocks follow wall time (one per ``slot_s``) and a blockhash is valid for ``blockhash_ttl_s`` after it
is issued, as on a cluster, so an engine that holds a transaction back sees it refused once expired.
Heights count from the Unix epoch, so a persisted last valid height keeps its meaning across a restart.
The chain keeps every transaction it executed (landed or failed) with its token balance changes.
Implements :class:`engine.chain.Chain`; one owner (the ChainNode actor) calls it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from solders.account import Account
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.token.state import Mint, TokenAccount, TokenAccountState
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata

from engine.chain import ChainTx, RecentBlockhash, SendOutcome, SendResult, StatusReport, TokenChange, TxState
from settlement.keys import token_account
from settlement.swap_tx import TOKEN_PROGRAM, memo_of

_TOKEN_ACCOUNT_LEN = 165
_MINT_LEN = 82
_FEE_LAMPORTS = 10 * 10**9
"""What a wallet is given to pay fees with (10 SOL)."""


class EmbeddedChain:
    def __init__(
        self, blockhash_ttl_s: float = 60.0, slot_s: float = 0.4, rotate_s: float = 1.0, now: Callable[[], float] = time.time
    ) -> None:
        self._svm = LiteSVM().with_blockhash_check(False)  # the validity window is this class's (wall time)
        self._now = now
        self.slot_s = slot_s
        self._ttl_slots = max(1, int(blockhash_ttl_s / slot_s))
        self._rotate_slots = max(1, int(rotate_s / slot_s))
        self._valid: dict[str, int] = {}
        self._current: tuple[str, int] | None = None
        self._executed: dict[str, ChainTx] = {}
        self._raw: dict[str, bytes] = {}
        self._by_memo: dict[str, list[str]] = {}
        self._rent_token = self._svm.minimum_balance_for_rent_exemption(_TOKEN_ACCOUNT_LEN)
        self._rent_mint = self._svm.minimum_balance_for_rent_exemption(_MINT_LEN)

    def height(self) -> int:
        return int(self._now() / self.slot_s)

    async def latest_blockhash(self) -> RecentBlockhash:
        height = self.height()
        if self._current is None or height - self._current[1] >= self._rotate_slots:
            self._svm.expire_blockhash()
            blockhash = str(self._svm.latest_blockhash())
            self._current = (blockhash, height)
            self._valid[blockhash] = height + self._ttl_slots
            self._valid = {h: last for h, last in self._valid.items() if last >= height - self._ttl_slots}
        blockhash, issued = self._current
        return RecentBlockhash(blockhash, issued + self._ttl_slots)

    async def send(self, raw: bytes) -> SendResult:
        try:
            tx = Transaction.from_bytes(raw)
        except ValueError as exc:
            return SendResult(SendOutcome.REJECTED, f"malformed transaction: {exc}")
        signature = str(tx.signatures[0])
        if signature in self._executed:
            return SendResult(SendOutcome.DUPLICATE, signature=signature)
        last_valid = self._valid.get(str(tx.message.recent_blockhash))
        if last_valid is None or self.height() > last_valid:
            return SendResult(SendOutcome.BLOCKHASH_NOT_FOUND, "BlockhashNotFound")
        if not all(tx.verify_with_results()):
            return SendResult(SendOutcome.REJECTED, "signature verification failed")
        keys = list(tx.message.account_keys)
        before = self._token_states(keys)
        result = self._svm.send_transaction(tx)
        error: str | None = None
        if isinstance(result, FailedTransactionMetadata):
            error = str(result.err())
            if "AlreadyProcessed" in error:
                return SendResult(SendOutcome.DUPLICATE, signature=signature)
            if "InstructionError" not in error:
                return SendResult(SendOutcome.REJECTED, error)  # refused before execution: nothing recorded
        after = self._token_states(keys)
        changes = tuple(
            TokenChange(str(key), owner, mint, pre, after[key][2] if key in after else pre) for key, (owner, mint, pre) in before.items()
        )
        signers = tuple(str(k) for k in keys[: tx.message.header.num_required_signatures])
        self._executed[signature] = ChainTx(signature, self.height(), signers, changes, memo_of(tx.message), error)
        self._raw[signature] = raw
        if self._executed[signature].memo:
            self._by_memo.setdefault(self._executed[signature].memo or "", []).append(signature)
        return SendResult(SendOutcome.ACCEPTED, signature=signature)

    def _token_states(self, keys: Sequence[Pubkey]) -> dict[Pubkey, tuple[str, str, int]]:
        states = {}
        for key in keys:
            account = self._svm.get_account(key)
            if account is not None and account.owner == TOKEN_PROGRAM and len(account.data) == _TOKEN_ACCOUNT_LEN:
                parsed = TokenAccount.from_bytes(bytes(account.data))
                states[key] = (str(parsed.owner), str(parsed.mint), parsed.amount)
        return states

    async def statuses(self, signatures: Sequence[str]) -> StatusReport:
        height = self.height()
        states = []
        for signature in signatures:
            tx = self._executed.get(signature)
            states.append(TxState.UNKNOWN if tx is None else TxState.FAILED if tx.error else TxState.LANDED)
        return StatusReport(height, tuple(states))

    async def transaction(self, signature: str) -> ChainTx | None:
        return self._executed.get(signature)

    async def token_balances(self, owner: str, mints: Sequence[str]) -> dict[str, int]:
        balances = {}
        for mint in mints:
            account = self._svm.get_account(token_account(owner, mint))
            balances[mint] = TokenAccount.from_bytes(bytes(account.data)).amount if account is not None else 0
        return balances

    async def transactions_with_memo(self, signer: str, memo: str) -> list[ChainTx]:
        found = (self._executed[s] for s in self._by_memo.get(memo, []))
        return [tx for tx in found if signer in tx.signers]

    def token_account_state(self, address: str) -> list[tuple[str, str, int]]:
        """``[(owner, mint, amount)]`` of a token account, or ``[]`` if there is none."""
        state = self._token_states([Pubkey.from_string(address)])
        return list(state.values())

    def raw_transaction(self, signature: str) -> bytes | None:
        """The executed transaction's bytes, as sent."""
        return self._raw.get(signature)

    def transactions(self) -> list[ChainTx]:
        """Every transaction executed, oldest first (what a scan of the chain reads)."""
        return list(self._executed.values())

    async def ensure_accounts(self, specs: Sequence[tuple[str, str, int, int, bool]]) -> None:
        """Create each mint and token account that does not exist yet, ``(owner, mint, decimals,
        amount, fee_payer)`` each; a fee payer gets lamports for fees (a development chain's faucet)."""
        for owner_text, mint_text, decimals, amount, fee_payer in specs:
            mint = Pubkey.from_string(mint_text)
            owner = Pubkey.from_string(owner_text)
            if self._svm.get_account(mint) is None:
                data = bytes(Mint(mint_authority=None, supply=2**63, decimals=decimals, is_initialized=True, freeze_authority=None))
                self._svm.set_account(mint, Account(lamports=self._rent_mint, data=data, owner=TOKEN_PROGRAM, executable=False))
            address = token_account(owner, mint)
            if self._svm.get_account(address) is None:
                state = TokenAccount(
                    mint=mint,
                    owner=owner,
                    amount=amount,
                    delegate=None,
                    state=TokenAccountState.Initialized,
                    is_native=None,
                    delegated_amount=0,
                    close_authority=None,
                )
                self._svm.set_account(address, Account(lamports=self._rent_token, data=bytes(state), owner=TOKEN_PROGRAM, executable=False))
            if fee_payer and self._svm.get_balance(owner) in (None, 0):
                self._svm.airdrop(owner, _FEE_LAMPORTS)
