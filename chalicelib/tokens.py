"""The app's own measures of tokens, where no model has counted them.

- `estimate_tokens`: about one token per 4 bytes of UTF-8, rounded up: the measure the
  history and context limits are sized in (HISTORY_TOKEN_LIMIT, CONTEXT_TOKEN_LIMIT) and the
  context window is checked with. A typical figure, not a bound: text dense in punctuation,
  emoji or CJK takes more tokens than that.
- `token_bound`: the UTF-8 bytes, an upper bound of any byte-level tokenizer's count (each of
  its tokens stands for at least one byte): what budgets reserve where Bedrock cannot count
  (chalicelib/chat/input_bound.py, and its proof in docs/OPERATIONS.md).
"""
from __future__ import annotations

BYTES_PER_TOKEN = 4


def tokens_for_bytes(size: int) -> int:
    """Tokens of `size` bytes of UTF-8 text, rounded up."""
    return -(-size // BYTES_PER_TOKEN)


def estimate_tokens(text: str) -> int:
    """Tokens of a text, by its UTF-8 size."""
    return tokens_for_bytes(len(text.encode("utf-8")))


def token_bound(text: str) -> int:
    """At least as many as any byte-level tokenizer makes of `text`: its UTF-8 bytes."""
    return len(text.encode("utf-8"))
