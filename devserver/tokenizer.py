"""The Bedrock emulator's tokenizer: one rule, like a real tokenizer's and unlike any byte estimate.

- A word (a run of ASCII letters and digits) of up to 6 characters is one token; a longer one is
  a token per 4 characters (the last one shorter).
- Every other ASCII character but whitespace (punctuation, symbols) is a token of its own, and
  so is every non-ASCII character (an accented letter, a CJK character, an emoji).
- Whitespace is no token: it rides on the token after it (as a byte-level BPE tokenizer joins a
  space to the word it precedes), and trailing whitespace on the token before it.

So "The quick brown fox." is 5 tokens (20 bytes: the app's old measure of 4 bytes a token said 5
too), while "a,b;c!" is 6 (2 by bytes), "😀😀" 2 and "漢字テスト" 5 (4 by bytes): a text dense in
punctuation, emoji or CJK costs more tokens than bytes / 4, as it does on a real model. Every
token holds at least one byte, so no text has more tokens than UTF-8 bytes: the bound the app
reserves for models Bedrock cannot count (chalicelib/chat/input_bound.py).

Converse, ConverseStream and CountTokens all count with it, and the reply streams one delta per
token, so the deltas joined are the reply exactly.
"""
from __future__ import annotations

import re

SHORT_WORD = 6  # characters: a word up to this long is one token
PIECE = 4  # characters of a longer word per token
_UNIT = re.compile(r"\s*(?:[A-Za-z0-9]+|\S)", re.ASCII)


def split_tokens(text: str) -> list[str]:
    """The text's tokens, in order: joined, they are the text exactly (whitespace included)."""
    tokens: list[str] = []
    position = 0
    for match in _UNIT.finditer(text):
        unit = match.group()
        body = unit.lstrip()
        lead = unit[:len(unit) - len(body)]
        if body.isascii() and body.isalnum() and len(body) > SHORT_WORD:
            pieces = [body[i:i + PIECE] for i in range(0, len(body), PIECE)]
            pieces[0] = lead + pieces[0]
            tokens.extend(pieces)
        else:
            tokens.append(unit)
        position = match.end()
    rest = text[position:]
    if rest:  # trailing whitespace (or a text of whitespace only: one token)
        if tokens:
            tokens[-1] += rest
        else:
            tokens.append(rest)
    return tokens


def count_tokens(text: str) -> int:
    """The text's tokens by the rule (see the module docstring)."""
    return len(split_tokens(text))
