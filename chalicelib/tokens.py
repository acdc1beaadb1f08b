"""The app's own measure of tokens, where no model has counted them yet.

About one token per 4 bytes of UTF-8, rounded up: the measure the history and
context limits are sized in (HISTORY_TOKEN_LIMIT, CONTEXT_TOKEN_LIMIT).
"""
from __future__ import annotations

BYTES_PER_TOKEN = 4


def tokens_for_bytes(size: int) -> int:
    """Tokens of `size` bytes of UTF-8 text, rounded up."""
    return -(-size // BYTES_PER_TOKEN)


def estimate_tokens(text: str) -> int:
    """Tokens of a text, by its UTF-8 size."""
    return tokens_for_bytes(len(text.encode("utf-8")))
