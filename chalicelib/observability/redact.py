"""Keeping secrets out of logs: tokens, keys, signed URLs, prompts and replies.

Two nets: fields are dropped by name (anything that can hold user text or a
credential), and strings are scrubbed of anything shaped like a credential,
whatever field they arrived in.
"""
from __future__ import annotations

import re
import traceback
from typing import Any

REDACTED = "[redacted]"

# Fields whose values are never logged: credentials, and the user's words.
SENSITIVE_FIELDS = frozenset({
    "token", "accesstoken", "idtoken", "refreshtoken", "authorization", "password", "secret", "privatekey",
    "private_key", "secretstring", "prompt", "system", "content", "text", "reply", "body", "url", "headers",
    "cookie", "x-amz-security-token", "signature",
})

_PATTERNS = (
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),  # JWTs
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S),
    re.compile(r"\bgh[opsuri]_[A-Za-z0-9]{16,}\b"),  # GitHub tokens
    re.compile(r"\bv1\.[0-9a-f]{40}\b"),  # legacy GitHub installation tokens
    re.compile(r"(?i)(X-Amz-(Signature|Credential|Security-Token)=)[^&\s\"']+"),  # presigned URLs
    re.compile(r"(?i)\b(AKIA|ASIA)[A-Z0-9]{16}\b"),  # AWS access key ids
)


def _normal(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


_SENSITIVE_NORMAL = frozenset(_normal(name) for name in SENSITIVE_FIELDS)


def scrub(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact(value: Any, *, depth: int = 0) -> Any:
    """A copy of value with sensitive fields dropped and credential-shaped strings scrubbed."""
    if depth > 6:
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: (REDACTED if _normal(str(key)) in _SENSITIVE_NORMAL else redact(item, depth=depth + 1))
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item, depth=depth + 1) for item in value]
    return value


# Exceptions whose message quotes the values they were given: a DynamoDB item holding a
# prompt, say. Their type and traceback are logged, their message is not.
QUOTES_ITS_INPUT = frozenset({"ParamValidationError", "ValidationError", "UnicodeDecodeError", "UnicodeEncodeError"})
MAX_EXCEPTION_MESSAGE = 500


def exception_text(error: BaseException) -> str:
    """A traceback for the logs: frames (source lines, no variables) and each message
    in the chain scrubbed, cut short, or dropped for the types that quote their input."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__qualname__
        message = REDACTED if name in QUOTES_ITS_INPUT else scrub(str(current))[:MAX_EXCEPTION_MESSAGE]
        frames = "".join(traceback.format_tb(current.__traceback__))
        parts.append(f"{frames}{type(current).__module__}.{name}: {message}")
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\n-- while handling or caused by --\n".join(reversed(parts))
