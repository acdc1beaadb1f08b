"""A GitHub App installed on several accounts, end to end: a stack whose secret names installations
2002 (octo-org) and 3003 (octo-labs) of the emulator, but not 4004 (outside-corp)."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import jwt
import pytest

from devserver import github_repos
from tests.e2e.conftest import GENEROUS_LIMITS, start_stack, stop_stack
from tests.e2e.test_github import call, control, data, error_code, secret_arn, secrets_client

FIRST, SECOND, UNNAMED = "octo-org/hello-world", "octo-labs/lab-notes", "outside-corp/private-plans"


@pytest.fixture(scope="module")
def multi_stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("github-installations"),
                        env={**GENEROUS_LIMITS, "DEV_GITHUB_INSTALLATION_IDS": "2002,3003"})
    yield stack
    stop_stack(stack.process)


@pytest.fixture(scope="module")
def client(multi_stack):
    with multi_stack.connect() as connected:
        yield connected


def repo_state(stack, repo: str) -> dict:
    return control(stack, f"/_emulator/state?repo={repo}")


def test_the_stack_secret_names_both_installations(multi_stack):
    secret = json.loads(secrets_client(multi_stack).get_secret_value(SecretId=secret_arn(multi_stack))["SecretString"])
    assert secret["installationIds"] == [2002, 3003] and "installationId" not in secret


def test_repos_of_both_installations_are_listed_and_no_other(client):
    listed = data(call(client, "github.repos"))
    assert sorted(r["fullName"] for r in listed["repos"]) == [SECOND, FIRST]
    assert listed["truncated"] is False


def test_files_are_read_from_either_installation(client):
    lab = data(call(client, "github.file", repo=SECOND, path="README.md"))
    assert lab["content"] == github_repos.LAB_FILES["README.md"].decode()
    entries = {e["path"] for e in data(call(client, "github.tree", repo=SECOND))["entries"]}
    assert entries == {"README.md", "notes", "notes/2026.md"}
    hello = data(call(client, "github.file", repo=FIRST, path="README.md"))
    assert hello["content"] == github_repos.SEED_FILES["README.md"].decode()


def test_a_pull_request_in_the_second_installation(multi_stack, client):
    branch = f"llm-ide/lab-{time.time_ns()}"
    main_sha = repo_state(multi_stack, SECOND)["refs"]["heads/main"]
    pr = data(call(client, "github.pr", repo=SECOND, base="main", branch=branch, title="Lab change",
                   files=[{"path": "notes/2026.md", "content": "- routed to installation 3003\n"}]))
    after = repo_state(multi_stack, SECOND)
    assert after["refs"][f"heads/{branch}"] == pr["commitSha"] and after["commits"][pr["commitSha"]]["parents"] == [
        main_sha]
    assert [p["number"] for p in after["pulls"] if p["head"]["ref"] == branch] == [pr["number"]]
    assert pr["url"].endswith(f"/{SECOND}/pull/{pr['number']}")
    changed = data(call(client, "github.file", repo=SECOND, path="notes/2026.md", ref=branch))
    assert changed["content"] == "- routed to installation 3003\n"
    assert not any(r.startswith(f"heads/{branch}") for r in repo_state(multi_stack, FIRST)["refs"])


def test_a_repository_of_an_installation_the_secret_does_not_name_is_not_found(multi_stack, client):
    before = repo_state(multi_stack, UNNAMED)
    assert error_code(call(client, "github.file", repo=UNNAMED, path="README.md")) == "NOT_FOUND"
    assert error_code(call(client, "github.tree", repo=UNNAMED)) == "NOT_FOUND"
    frame = call(client, "github.pr", repo=UNNAMED, base="main", branch=f"ide/x-{time.time_ns()}", title="No",
                 files=[{"path": "README.md", "content": "must not be written\n"}])
    assert error_code(frame) == "NOT_FOUND" and UNNAMED in frame["error"]["message"]
    after = repo_state(multi_stack, UNNAMED)
    assert after["refs"] == before["refs"] and after["pulls"] == [] and after["commits"] == before["commits"]
    assert error_code(call(client, "github.file", repo="octo-org/nope", path="README.md")) == "NOT_FOUND"


# --- the emulator itself ------------------------------------------------------------------


def emulator_call(stack, path: str, token: str, method: str = "GET") -> tuple[int, Any]:
    request = urllib.request.Request(stack.emulators["githubApiUrl"] + path, method=method,
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_the_emulator_gives_each_installation_token_only_its_own_repositories(multi_stack):
    secret = json.loads(secrets_client(multi_stack).get_secret_value(SecretId=secret_arn(multi_stack))["SecretString"])
    now = int(time.time())
    app_jwt = jwt.encode({"iat": now - 60, "exp": now + 300, "iss": secret["appId"]}, secret["privateKey"],
                         algorithm="RS256")
    status, issued = emulator_call(multi_stack, "/app/installations/2002/access_tokens", app_jwt, "POST")
    assert status == 201
    token = issued["token"]

    status, listed = emulator_call(multi_stack, "/installation/repositories", token)
    assert [r["full_name"] for r in listed["repositories"]] == [FIRST]
    assert emulator_call(multi_stack, f"/repos/{FIRST}", token)[0] == 200
    assert emulator_call(multi_stack, f"/repos/{SECOND}/contents/README.md", token)[0] == 404

    assert emulator_call(multi_stack, f"/repos/{SECOND}/installation", token)[0] == 401  # needs the app's JWT
    status, owner = emulator_call(multi_stack, f"/repos/{SECOND}/installation", app_jwt)
    assert status == 200 and owner["id"] == 3003 and owner["account"]["login"] == "octo-labs"
    assert emulator_call(multi_stack, "/repos/octo-org/nope/installation", app_jwt)[0] == 404
    assert emulator_call(multi_stack, "/app/installations/9999/access_tokens", app_jwt, "POST")[0] == 404
