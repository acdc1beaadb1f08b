"""The CLI's token store: found by the API's URL or its app client, never offered elsewhere; private."""
from __future__ import annotations

import stat
import time
from collections.abc import Callable
from typing import Any

import pytest

from client.auth import NotSignedIn, SignedIn, Tokens, TokenStore, UserPool


def tokens(username: str) -> Tokens:
    return Tokens(username=username, access_token=f"a-{username}", id_token=f"i-{username}", refresh_token=None,
                  expires_at=2_000_000_000)


def loaded(store: TokenStore, *args: Any) -> Tokens:
    found = store.load(*args)
    assert found is not None, "no tokens saved under that name"
    return found


def test_a_sign_in_is_found_by_either_name_it_was_saved_under(tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    store.save(["wss://api.example/prod", "client-1"], tokens("alice"))  # `login --url ... --client-id client-1`
    assert loaded(store, [None, "client-1"]).username == "alice"
    assert loaded(store, ["wss://api.example/prod", None]).username == "alice"
    assert stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode) == 0o600


def test_each_api_keeps_its_own_users_and_a_token_goes_to_no_other(tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    store.save(["ws://local/a", "client-a"], tokens("alice"))
    store.save(["ws://local/a", "client-a"], tokens("bob"))
    store.save(["wss://other/prod", "client-b"], tokens("carol"))
    assert loaded(store, ["ws://local/a"]).username == "bob"  # the current user of that API
    assert loaded(store, ["ws://local/a"], "alice").access_token == "a-alice"
    assert loaded(store, ["wss://other/prod"]).username == "carol"
    assert store.load(["wss://unknown"]) is None  # never "the latest" token to a server it was not for
    assert store.load(["ws://local/a"], "dave") is None
    assert TokenStore(tmp_path / "none.json").load(["ws://local/a"]) is None


def test_a_logout_forgets_only_a_sign_in_it_found_and_can_revoke(tmp_path):
    """Forgetting a user kept under another name than the first used to delete that sign-in and answer None: the
    logout said "not signed in" and never revoked the refresh token it had thrown away."""
    store = TokenStore(tmp_path / "tokens.json")
    store.save(["client-1"], tokens("alice"))
    assert store.forget(["wss://api.example/prod", "client-1"], "alice") is None
    assert loaded(store, ["client-1"]).username == "alice"  # still kept, so a logout of it can still revoke it
    assert store.forget(["client-1"], "alice") == tokens("alice")
    assert store.load(["client-1"]) is None


def test_a_sign_in_is_not_offered_to_another_url_that_shares_its_app_client(tmp_path):
    """`--url` to another server with the endpoints file's app client: the token saved for the first
    server must not go to the second (it could replay it there); the app client alone finds a sign-in
    only when no URL is given."""
    store = TokenStore(tmp_path / "tokens.json")
    store.save(["ws://127.0.0.1:8000/local", "client-1"], tokens("alice"))
    assert store.load(["ws://elsewhere.example/prod", "client-1"]) is None
    assert loaded(store, ["ws://127.0.0.1:8000/local", "client-1"]).username == "alice"
    assert loaded(store, [None, "client-1"]).username == "alice"


def test_signed_in_renews_before_expiry_and_keeps_the_refresh_token(tmp_path):
    import time

    from client.auth import NotSignedIn, SignedIn, UserPool

    store = TokenStore(tmp_path / "tokens.json")
    now = int(time.time())
    store.save(["ws://a"], Tokens("alice", "old", "id-old", "refresh", expires_at=now + 30, issued_at=now - 3570))
    renewed = []

    def renew(current: Tokens, pool: UserPool) -> Tokens:
        renewed.append(current.access_token)
        return Tokens("alice", "new", "id-new", current.refresh_token, expires_at=now + 3600, issued_at=now)

    account = SignedIn(store, ["ws://a"], UserPool("client", "us-east-1"), renew=renew)
    assert account.tokens().access_token == "new"  # 30 s left of an hour: renewed
    assert account.tokens().access_token == "new" and renewed == ["old"]  # then fresh: not again
    assert loaded(store, ["ws://a"]).refresh_token == "refresh"
    forgotten = account.forget()
    assert forgotten is not None and forgotten.username == "alice" and store.load(["ws://a"]) is None
    try:
        account.tokens()
    except NotSignedIn as exc:
        assert "llm-ide login" in str(exc)
    else:
        raise AssertionError("a forgotten sign-in must not be usable")


def test_a_short_lived_token_is_renewed_at_half_its_life_not_every_time():
    now = 1_000_000
    young = Tokens("a", "x", "y", "r", expires_at=now + 20, issued_at=now - 4)  # 24 s tokens, 20 s left
    assert not young.refresh_due(now=now)
    assert young.refresh_due(now=now + 9)  # 11 s left: under half
    legacy = Tokens("a", "x", "y", "r", expires_at=now + 200)  # a file from before issued_at was kept
    assert not legacy.refresh_due(now=now) and legacy.refresh_due(now=now + 150)


def test_local_times_are_readable():
    from client.times import local_time, relative

    assert relative(1000, now=1000) == "now"
    assert relative(1000 + 125, now=1000) == "in 2 min"
    assert relative(1000 - 7300, now=1000) == "2 h ago"
    shown = local_time("2025-03-04T10:00:00Z", now=1741082400 + 60)
    assert shown.startswith("2025-03-04 ") and shown.endswith("(1 min ago)")
    assert local_time(None) == "-" and local_time("not a time") == "not a time"



def renewing_while(path, other_process: Callable[[], object]) -> SignedIn:
    """alice's sign-in for ws://a, 30 s left of its hour: its next tokens() renews it, and `other_process` runs
    while Cognito answers that renewal (another llm-ide command, writing the same file)."""
    now = int(time.time())
    TokenStore(path).save(["ws://a"], Tokens("alice", "old", "id-old", "refresh", expires_at=now + 30,
                                             issued_at=now - 3570))

    def renew(current: Tokens, pool: UserPool) -> Tokens:
        other_process()
        return Tokens("alice", "new", "id-new", current.refresh_token, expires_at=now + 3600, issued_at=now)

    return SignedIn(TokenStore(path), ["ws://a"], UserPool("client", "us-east-1"), renew=renew)


def test_a_logout_while_a_renewal_runs_is_not_undone_by_it(tmp_path):
    """`llm-ide logout` in one process while another (a running `llm-ide serve`, a command) renews the same sign-in:
    the renewal wrote the whole file back as it had read it, with the user in it, after the logout had forgotten
    them: signed in again for the access token's hour, and `logout` had said "Signed out"."""
    path = tmp_path / "tokens.json"
    account = renewing_while(path, lambda: TokenStore(path).forget(["ws://a"], "alice"))
    with pytest.raises(NotSignedIn, match="llm-ide login"):
        account.tokens()
    assert TokenStore(path).load(["ws://a"]) is None


def test_a_login_as_another_user_while_a_renewal_runs_stays_current(tmp_path):
    path = tmp_path / "tokens.json"
    account = renewing_while(path, lambda: TokenStore(path).save(["ws://a"], tokens("bob")))  # `login` as bob
    assert account.tokens().access_token == "new"  # alice's renewal is kept, as hers
    assert loaded(TokenStore(path), ["ws://a"]).username == "bob"  # and bob, who signed in last, is current
    assert loaded(TokenStore(path), ["ws://a"], "alice").access_token == "new"
