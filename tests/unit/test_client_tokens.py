"""The CLI's token store: found by URL, by app client or as the latest sign-in; private to its owner."""
from __future__ import annotations

import stat

from client.auth import Tokens, TokenStore


def tokens(username: str) -> Tokens:
    return Tokens(username=username, access_token=f"a-{username}", id_token=f"i-{username}", refresh_token=None,
                  expires_at=2_000_000_000)


def test_a_sign_in_by_app_client_is_found_by_the_apis_url(tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    store.save([None, "client-1"], tokens("alice"))  # `login --client-id client-1 --region ...`
    assert store.load(["wss://api.example/prod", None]).username == "alice"  # `ping --url ...`
    assert stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode) == 0o600


def test_each_api_keeps_its_own_users_and_the_latest_is_the_fallback(tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    store.save(["ws://local/a", "client-a"], tokens("alice"))
    store.save(["ws://local/a", "client-a"], tokens("bob"))
    store.save(["wss://other/prod", "client-b"], tokens("carol"))
    assert store.load(["ws://local/a"]).username == "bob"  # the current user of that API
    assert store.load(["ws://local/a"], "alice").access_token == "a-alice"
    assert store.load(["wss://other/prod"]).username == "carol"
    assert store.load(["wss://unknown"]).username == "carol"  # the latest sign-in
    assert store.load(["wss://unknown"], "dave") is None
    assert TokenStore(tmp_path / "none.json").load(["ws://local/a"]) is None
