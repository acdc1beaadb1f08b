"""The token file changed by several llm-ide processes at once (a CLI command's login or logout beside a running
`llm-ide serve`'s renewals): every change is a read-modify-write of the whole file under its lock, so none is lost
to another process's write of what it had read before, and a logout is never undone by a renewal."""
from __future__ import annotations

import json
import multiprocessing
import stat
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from client import auth
from client.auth import Tokens, TokenStore

APIS: list[str | None] = ["ws://local/a", "client-a"]
ROUNDS = 30
WORKERS = 3
# fork where there is one (fast to start); spawn elsewhere (Windows).
_CONTEXT: Any = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def tokens(username: str, access: str = "a", refresh: str | None = "r") -> Tokens:
    return Tokens(username=username, access_token=f"{access}-{username}", id_token=f"i-{username}",
                  refresh_token=refresh, expires_at=2_000_000_000, issued_at=1_900_000_000)


def _logins_and_logouts(path: str, worker: int, start: Any) -> None:
    """`llm-ide login` of ROUNDS users, then `llm-ide logout` of every other one."""
    store = TokenStore(Path(path))
    start.wait()
    for i in range(ROUNDS):
        store.save(APIS, tokens(f"u{worker}-{i}"))
    for i in range(0, ROUNDS, 2):
        store.forget(APIS, f"u{worker}-{i}")


def _renewals(path: str, start: Any) -> None:
    """A running bridge renewing each of the v users again and again, as long as their sign-in is kept."""
    store = TokenStore(Path(path))
    start.wait()
    for round_ in range(3):
        for i in range(ROUNDS):
            store.renewed(APIS, tokens(f"v{i}"), tokens(f"v{i}", access=f"renewed{round_}"))


def _logouts(path: str, start: Any) -> None:
    store = TokenStore(Path(path))
    start.wait()
    for i in range(ROUNDS):
        store.forget(APIS, f"v{i}")


def test_concurrent_logins_logouts_and_renewals_in_several_processes_lose_no_write(tmp_path):
    path = tmp_path / "tokens.json"
    store = TokenStore(path)
    for i in range(ROUNDS):
        store.save(APIS, tokens(f"v{i}"))  # signed in before; one process renews them while another logs them out
    start = _CONTEXT.Barrier(WORKERS + 2)
    processes = [_CONTEXT.Process(target=_logins_and_logouts, args=(str(path), worker, start))
                 for worker in range(WORKERS)]
    processes += [_CONTEXT.Process(target=_renewals, args=(str(path), start)),
                  _CONTEXT.Process(target=_logouts, args=(str(path), start))]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0] * len(processes)
    kept = json.loads(path.read_text())
    # Every login that was not logged out is there (none lost), and every logout holds (no renewal undid one).
    expected = sorted(f"u{w}-{i}" for w in range(WORKERS) for i in range(1, ROUNDS, 2))
    assert {name: sorted(kept[name]["users"]) for name in kept} == dict.fromkeys(APIS, expected)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.with_name("tokens.json.lock").stat().st_mode) == 0o600
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # every write replaced the file whole


def test_a_lock_another_process_keeps_too_long_is_a_clear_error_and_the_file_is_untouched(tmp_path, monkeypatch):
    monkeypatch.setattr(auth, "TOKEN_LOCK_TIMEOUT_SECONDS", 0.2)
    path = tmp_path / "tokens.json"
    TokenStore(path).save(APIS, tokens("alice"))
    held, release = _CONTEXT.Event(), _CONTEXT.Event()
    holder = _CONTEXT.Process(target=_hold_lock, args=(str(path), held, release))
    holder.start()
    try:
        assert held.wait(30)
        with pytest.raises(auth.TokenFileBusy, match=r"held by another llm-ide process for over 0\.2 s") as busy:
            TokenStore(path).forget(APIS, "alice")
        # Not "signed out": a running bridge that read it so would cancel the chats of a user still signed in.
        assert not isinstance(busy.value, auth.NotSignedIn)
    finally:
        release.set()
        holder.join(30)
    assert TokenStore(path).load(APIS) == tokens("alice")  # the logout that could not lock changed nothing


def _hold_lock(path: str, held: Any, release: Any) -> None:
    with FileLock(Path(path).with_name("tokens.json.lock")):
        held.set()
        release.wait(30)
