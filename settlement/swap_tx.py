"""One swap transaction: for every leg, the trader's transfer into the venue's vault and the vault's
transfer out to the trader (``TransferChecked``, so the mint and its decimals are checked on chain),
then a memo with the orderId. Signed by the trader (fee payer) and every venue authority, so a split
route is one transaction: all legs land or none.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction

from engine.settlement import LegTerms
from settlement.keys import token_account

TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
MEMO_PROGRAM = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
_TRANSFER_CHECKED = 12


def transfer_checked(source: Pubkey, mint: Pubkey, destination: Pubkey, owner: Pubkey, amount: int, decimals: int) -> Instruction:
    return Instruction(
        TOKEN_PROGRAM,
        bytes([_TRANSFER_CHECKED]) + struct.pack("<QB", amount, decimals),
        [
            AccountMeta(source, False, True),
            AccountMeta(mint, False, False),
            AccountMeta(destination, False, True),
            AccountMeta(owner, True, False),
        ],
    )


def memo(text: str) -> Instruction:
    return Instruction(MEMO_PROGRAM, text.encode(), [])


def swap_message(order_id: str, trader: Pubkey, legs: Sequence[LegTerms], blockhash: str) -> Message:
    instructions: list[Instruction] = []
    for leg in legs:
        mint_in, mint_out = Pubkey.from_string(leg.mint_in), Pubkey.from_string(leg.mint_out)
        authority = Pubkey.from_string(leg.authority)
        instructions.append(
            transfer_checked(
                token_account(trader, mint_in), mint_in, Pubkey.from_string(leg.vault_in), trader, leg.amount_in, leg.decimals_in
            )
        )
        instructions.append(
            transfer_checked(
                Pubkey.from_string(leg.vault_out), mint_out, token_account(trader, mint_out), authority, leg.amount_out, leg.decimals_out
            )
        )
    instructions.append(memo(order_id))
    return Message.new_with_blockhash(instructions, trader, Hash.from_string(blockhash))


def assemble(message: Message, signatures: dict[Pubkey, Signature]) -> Transaction:
    """The transaction with every required signature in the message's signer order."""
    signers = message.account_keys[: message.header.num_required_signatures]
    return Transaction.populate(message, [signatures[key] for key in signers])


@dataclass(frozen=True, slots=True)
class Transfer:
    source: str
    mint: str
    destination: str
    owner: str
    amount: int
    decimals: int


def transfers(message: Message) -> list[Transfer]:
    """The TransferChecked instructions of a message (what a co-signer checks before signing)."""
    keys = message.account_keys
    found = []
    for ix in message.instructions:
        if keys[ix.program_id_index] != TOKEN_PROGRAM or not ix.data or ix.data[0] != _TRANSFER_CHECKED or len(ix.accounts) < 4:
            continue
        amount, decimals = struct.unpack("<QB", bytes(ix.data[1:10]))
        source, mint, destination, owner = (str(keys[i]) for i in ix.accounts[:4])
        found.append(Transfer(source, mint, destination, owner, amount, decimals))
    return found


def memo_of(message: Message) -> str | None:
    keys = message.account_keys
    for ix in message.instructions:
        if keys[ix.program_id_index] == MEMO_PROGRAM:
            return bytes(ix.data).decode(errors="replace")
    return None
