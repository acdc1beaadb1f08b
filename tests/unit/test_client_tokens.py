"""The CLI's token store: found by the API's URL or its app client, never offered elsewhere; private."""
from __future__ import annotations

import stat

from client.auth import Tokens, TokenStore


def tokens(username: str) -> Tokens:
    return Tokens(username=username, access_token=f"a-{username}", id_token=f"i-{username}", refresh_token=None,
                  expires_at=2_000_000_000)


def test_a_sign_in_is_found_by_either_name_it_was_saved_under(tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    store.save(["wss://api.example/prod", "client-1"], tokens("alice"))  # `login --url ... --client-id client-1`
    assert store.load([None, "client-1"]).username == "alice"
    assert store.load(["wss://api.example/prod", None]).username == "alice"
    assert stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode) == 0o600


def test_each_api_keeps_its_own_users_and_a_token_goes_to_no_other(tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    store.save(["ws://local/a", "client-a"], tokens("alice"))
    store.save(["ws://local/a", "client-a"], tokens("bob"))
    store.save(["wss://other/prod", "client-b"], tokens("carol"))
    assert store.load(["ws://local/a"]).username == "bob"  # the current user of that API
    assert store.load(["ws://local/a"], "alice").access_token == "a-alice"
    assert store.load(["wss://other/prod"]).username == "carol"
    assert store.load(["wss://unknown"]) is None  # never "the latest" token to a server it was not for
    assert store.load(["ws://local/a"], "dave") is None
    assert TokenStore(tmp_path / "none.json").load(["ws://local/a"]) is None
