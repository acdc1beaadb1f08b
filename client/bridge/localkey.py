"""The bridge's local key: made once, kept in LLM_IDE_HOME (mode 0600), asked of every request."""
from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

PREFIX = "lli-local-"


def key_path() -> Path:
    return Path(os.environ.get("LLM_IDE_HOME") or Path.home() / ".llm-ide") / "local-key"


def load_or_create(path: Path | None = None) -> str:
    """The key in `path`, made (256 random bits) the first time."""
    path = path or key_path()
    try:
        key = path.read_text().strip()
        if key.startswith(PREFIX):
            return key
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = PREFIX + secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    tmp.replace(path)
    return key


def matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison, so the key cannot be guessed a character at a time."""
    return presented is not None and hmac.compare_digest(expected.encode(), presented.encode())
