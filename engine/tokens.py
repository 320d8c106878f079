"""The token list: symbols the engine knows, their mint addresses, and what counts as a token.

A token is either a listed symbol (case-insensitive) or a base58 Solana mint
address (32 to 44 characters). Mints of listed tokens resolve to their symbol,
so ``SOL`` and ``So111...112`` are the same token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Token:
    symbol: str
    mint: str
    decimals: int
    reference_usd: float


TOKENS: tuple[Token, ...] = (
    Token("SOL", "So11111111111111111111111111111111111111112", 9, 150.0),
    Token("USDC", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 6, 1.0),
    Token("USDT", "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", 6, 1.0),
    Token("BONK", "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263", 5, 0.00002),
    Token("JUP", "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", 6, 0.8),
    Token("RAY", "4k3Dyjzvzp8eMZWUXbBCjEvwSkkk59S5iCNLY3QrkX6R", 6, 2.0),
    Token("WIF", "EKpQGSJtjMFqKZ9KQanSqYXRcF8fBopzLHYxdM65zcjm", 6, 2.5),
    Token("MSOL", "mSoLzYCxHdYgdzU16g5QSh3i5K3z3KZK7ytfqcJm7So", 9, 170.0),
)

BY_SYMBOL: dict[str, Token] = {t.symbol: t for t in TOKENS}
BY_MINT: dict[str, Token] = {t.mint: t for t in TOKENS}

_BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")


def is_mint_address(raw: str) -> bool:
    return bool(_BASE58.match(raw))


def canonical_token(raw: str) -> str | None:
    """The canonical name of a token (symbol for listed ones, the mint otherwise), or None if ``raw`` is not a token."""
    text = raw.strip()
    if not text:
        return None
    upper = text.upper()
    if upper in BY_SYMBOL:
        return upper
    if is_mint_address(text):
        listed = BY_MINT.get(text)
        return listed.symbol if listed else text
    return None


UNLISTED_DECIMALS = 6
"""Decimals assumed for a mint the list does not name (a token launched on the simulated venues)."""


def mint_of(token: str) -> str:
    """The mint address of a canonical token (a listed symbol or a mint address)."""
    listed = BY_SYMBOL.get(token)
    return listed.mint if listed else token


def decimals_of(mint: str) -> int:
    listed = BY_MINT.get(mint)
    return listed.decimals if listed else UNLISTED_DECIMALS
