"""Several installations of the GitHub App: the secret's ids, repos merged, repository calls routed."""
from __future__ import annotations

import json
import logging
from typing import Any

import jwt
import pytest

from chalicelib.errors import Internal, NotFound
from chalicelib.github.client import GitHubClient
from chalicelib.github.credentials import (
    ROUTE_LIFETIME_SECONDS,
    AppJwt,
    AppSecret,
    InstallationTokens,
    RepoInstallations,
    SecretSource,
)
from chalicelib.github.operations import GitHubOperations
from chalicelib.transport import HttpResponse
from devserver.github import new_app_key, secret_document
from tests.fakes import GITHUB_API as API
from tests.fakes import Clock, FakeGitHub, FakeSecrets, reply

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gh"


@pytest.fixture(scope="module")
def keys():
    return new_app_key()


def document(key: str, **ids) -> str:
    return json.dumps({"appId": "1001", "privateKey": key, **ids})


# --- the secret ----------------------------------------------------------------------


@pytest.mark.parametrize("ids, expected", [
    ({"installationId": 2002}, (2002,)),
    ({"installationId": "2002"}, (2002,)),  # as the single id has always been accepted
    ({"installationIds": [2002]}, (2002,)),
    ({"installationIds": [2002, 3003, 4004]}, (2002, 3003, 4004)),
])
def test_the_secret_names_one_installation_or_several(keys, ids, expected):
    assert AppSecret.parse(document(keys[0], **ids)).installation_ids == expected


@pytest.mark.parametrize("ids, reason", [
    ({}, "exactly one of"),
    ({"installationId": 2002, "installationIds": [3003]}, "exactly one of"),
    ({"installationId": "x"}, "installationId is not a positive integer"),
    ({"installationId": 0}, "installationId is not a positive integer"),
    ({"installationId": True}, "installationId is not a positive integer"),
    ({"installationIds": []}, "not a list of 1 to 100"),
    ({"installationIds": 2002}, "not a list of 1 to 100"),
    ({"installationIds": "2002,3003"}, "not a list of 1 to 100"),
    ({"installationIds": list(range(1, 102))}, "not a list of 1 to 100"),
    ({"installationIds": [2002, "3003"]}, "other than positive integers"),
    ({"installationIds": [2002, 3003.5]}, "other than positive integers"),
    ({"installationIds": [2002, -1]}, "other than positive integers"),
    ({"installationIds": [True]}, "other than positive integers"),
    ({"installationIds": [2002, 2002]}, "names an installation twice"),
])
def test_invalid_installation_ids_are_internal_with_the_reason_in_the_log_only(keys, caplog, ids, reason):
    source = SecretSource(FakeSecrets(document(keys[0], **ids)), ARN)
    with caplog.at_level(logging.ERROR), pytest.raises(Internal) as error:
        source.get()
    assert error.value.message == "GitHub is not available"  # the client learns nothing of the secret
    [logged] = [r for r in caplog.records if r.getMessage() == "the GitHub App secret is invalid"]
    assert reason in logged.reason
    assert "PRIVATE KEY" not in caplog.text and "PRIVATE KEY" not in error.value.message


@pytest.mark.parametrize("text", ["[1, 2]", '"text"', "null", json.dumps({"appId": "1001", "installationId": 1})])
def test_a_secret_that_is_not_the_object_is_internal(text):
    with pytest.raises(Internal, match="not a JSON object"):
        AppSecret.parse(text)


# --- routing ------------------------------------------------------------------------


class InstallationsWorld:
    """world(installations, *replies): a client over a fake GitHub, with caches kept across clients."""

    def __init__(self, keys: tuple[str, str]) -> None:
        self.private, self.public = keys
        self.clock = Clock()
        self.state: dict[str, Any] = {}

    def __call__(self, installations: tuple[int, ...], *replies: HttpResponse) -> tuple[GitHubClient, FakeGitHub]:
        clock, state = self.clock, self.state
        if "secrets" not in state:
            state["secrets"] = FakeSecrets(secret_document(self.private, installation_ids=installations))
            state["caches"] = {"secrets": SecretSource(state["secrets"], ARN), "app_jwt": AppJwt(clock=clock),
                               "tokens": InstallationTokens(clock=clock), "routes": RepoInstallations(clock=clock)}
        transport = FakeGitHub(clock, self.public, *replies)
        client = GitHubClient(transport=transport, api_url=API, max_attempts=4, max_wait=20.0, clock=clock,
                              sleep=clock.sleep, jitter=lambda: 1.0, **state["caches"])
        return client, transport


@pytest.fixture
def world(keys) -> InstallationsWorld:
    return InstallationsWorld(keys)


def paths(transport: FakeGitHub) -> list[str]:
    return [f"{method} {url[len(API):]}" for method, url, _ in transport.calls]


def bearer(call: tuple) -> str:
    return call[2]["Authorization"].split(" ", 1)[1]


def test_one_installation_needs_no_lookup(world):
    client, transport = world((2002,), reply(200, {"ok": 1}))
    assert client.get("/repos/octo-org/hello-world") == {"ok": 1}
    assert paths(transport) == ["POST /app/installations/2002/access_tokens", "GET /repos/octo-org/hello-world"]


def test_a_repository_call_runs_as_the_installation_that_owns_it(world):
    client, transport = world((2002, 3003), reply(200, {"id": 3003, "account": {"login": "octo-labs"}}),
                              reply(200, {"ok": 1}), reply(200, {"ok": 2}))
    assert client.get("/repos/octo-labs/lab-notes/contents/README.md") == {"ok": 1}
    assert client.get("/repos/Octo-Labs/Lab-Notes/git/ref/heads/main") == {"ok": 2}  # GitHub ignores case
    assert paths(transport) == ["GET /repos/octo-labs/lab-notes/installation",
                                "POST /app/installations/3003/access_tokens",
                                "GET /repos/octo-labs/lab-notes/contents/README.md",
                                "GET /repos/Octo-Labs/Lab-Notes/git/ref/heads/main"]
    lookup, _token_request, first, second = transport.calls
    claims = jwt.decode(bearer(lookup), world.public, algorithms=["RS256"],
                        options={"verify_exp": False, "verify_iat": False})
    assert claims["iss"] == "1001"  # the lookup is made as the app, not as an installation
    assert bearer(first) == bearer(second) == "ghs_1"  # 3003's token, reused


def test_the_owner_of_a_repository_is_asked_again_after_a_while(world):
    client, transport = world((2002, 3003), reply(200, {"id": 3003}), reply(200, {}))
    client.get("/repos/octo-labs/lab-notes")
    world.clock.now += ROUTE_LIFETIME_SECONDS + 1
    client, transport = world((2002, 3003), reply(200, {"id": 2002}), reply(200, {}))  # moved to octo-org
    client.get("/repos/octo-labs/lab-notes")
    assert paths(transport) == ["GET /repos/octo-labs/lab-notes/installation",
                                "POST /app/installations/2002/access_tokens", "GET /repos/octo-labs/lab-notes"]


def test_a_repository_of_an_installation_the_secret_does_not_name_is_not_found(world):
    client, transport = world((2002, 3003), reply(200, {"id": 4004}))
    for _ in range(2):  # the second time from the cache, without asking GitHub
        with pytest.raises(NotFound, match="outside-corp/private-plans"):
            client.post("/repos/outside-corp/private-plans/git/blobs", {"content": "x"})
    assert paths(transport) == ["GET /repos/outside-corp/private-plans/installation"]  # no token, no write


def test_a_repository_the_app_is_not_installed_on_is_not_found_and_asked_again(world):
    missing = reply(404, {"message": "Not Found"})
    client, transport = world((2002, 3003), missing, missing)
    for _ in range(2):
        with pytest.raises(NotFound):
            client.get("/repos/octo-org/nope")
    assert paths(transport) == ["GET /repos/octo-org/nope/installation"] * 2


def test_a_lookup_refused_after_a_key_rotation_fetches_the_secret_again(world):
    client, _transport = world((2002, 3003), reply(401, {"message": "A JSON web token could not be decoded"}),
                              reply(200, {"id": 2002}), reply(200, {"ok": 1}))
    assert client.get("/repos/octo-org/hello-world") == {"ok": 1}
    assert world.state["secrets"].fetches == 2


def test_a_call_outside_a_repository_must_name_its_installation(world):
    client, transport = world((2002, 3003))
    with pytest.raises(Internal):
        client.get("/installation/repositories")
    with pytest.raises(Internal):
        client.paginate("/installation/repositories", key="repositories", installation=5005)
    assert transport.calls == []


def test_each_installation_has_its_own_token_renewed_before_it_expires(world):
    client, transport = world((2002, 3003), reply(200, {"id": 2002}), reply(200, {}), reply(200, {"id": 3003}),
                              reply(200, {}), reply(200, {"id": 2002}), reply(200, {}))
    client.get("/repos/octo-org/hello-world")
    client.get("/repos/octo-labs/lab-notes")
    world.clock.now += 3600 - 5 * 60 + 1  # both tokens within five minutes of their expiry; the routes too old
    client.get("/repos/octo-org/hello-world", query={"ref": "main"})
    assert [p for p in paths(transport) if "access_tokens" in p] == [
        "POST /app/installations/2002/access_tokens", "POST /app/installations/3003/access_tokens",
        "POST /app/installations/2002/access_tokens"]


# --- github.repos over several installations ------------------------------------------


def repos_page(prefix: str, count: int, *, more: bool) -> object:
    items = [{"full_name": f"{prefix}/r{i}", "default_branch": "main", "private": True} for i in range(count)]
    link = f'<{API}/installation/repositories?page=next>; rel="next"' if more else None
    return reply(200, {"repositories": items}, **({"link": link} if link else {}))


def test_repos_lists_every_installation_each_with_its_own_token(world):
    client, transport = world((2002, 3003), repos_page("octo-org", 2, more=False),
                              repos_page("octo-labs", 1, more=False))
    listed = GitHubOperations(client, max_file_bytes=1000).repos()
    assert [r["fullName"] for r in listed["repos"]] == ["octo-org/r0", "octo-org/r1", "octo-labs/r0"]
    assert listed["truncated"] is False
    listing = "GET /installation/repositories?per_page=100"
    assert paths(transport) == ["POST /app/installations/2002/access_tokens", listing,
                                "POST /app/installations/3003/access_tokens", listing]
    assert bearer(transport.calls[1]) == "ghs_1" and bearer(transport.calls[3]) == "ghs_2"


def test_repos_is_truncated_when_any_installation_was_cut(world):
    pages = [repos_page("octo-labs", 100, more=True) for _ in range(10)]
    client, _ = world((2002, 3003), repos_page("octo-org", 3, more=False), *pages)
    listed = GitHubOperations(client, max_file_bytes=1000).repos()
    assert len(listed["repos"]) == 1000 and listed["truncated"] is True  # 3 + 997: one frame's worth
    assert listed["repos"][:3] == [{"fullName": f"octo-org/r{i}", "defaultBranch": "main", "private": True}
                                   for i in range(3)]


def test_repos_stops_when_the_first_installations_fill_the_list(world):
    pages = [repos_page("octo-org", 100, more=i < 9) for i in range(10)]
    client, transport = world((2002, 3003), *pages)
    listed = GitHubOperations(client, max_file_bytes=1000).repos()
    assert len(listed["repos"]) == 1000 and listed["truncated"] is True  # 3003 left unread
    assert "POST /app/installations/3003/access_tokens" not in paths(transport)


def test_repos_lists_the_other_installations_when_one_named_in_the_secret_is_gone(world, caplog):
    """An installation the secret still names but the account removed (GitHub: 404 on its token) has no
    repository anyone can reach: the others are listed, and the operator is told which id to take out."""
    client, transport = world((2002, 3003), reply(404, {"message": "Not Found"}),
                              repos_page("octo-labs", 1, more=False))
    with caplog.at_level(logging.ERROR):
        listed = GitHubOperations(client, max_file_bytes=1000).repos()
    assert listed == {"repos": [{"fullName": "octo-labs/r0", "defaultBranch": "main", "private": True}],
                      "truncated": False}
    [logged] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged.installationId == 2002 and "secret" in logged.getMessage()
    assert "POST /app/installations/3003/access_tokens" in paths(transport)


def test_repos_is_not_found_when_every_installation_is_gone(world):
    missing = reply(404, {"message": "Not Found"})
    client, _ = world((2002, 3003), missing, missing)
    with pytest.raises(NotFound):
        GitHubOperations(client, max_file_bytes=1000).repos()
