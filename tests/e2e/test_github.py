"""The GitHub actions end to end: client → gateway → message handler → github_worker → GitHub emulator."""
from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request

import boto3
import jwt
import pytest

from devserver import github as emulator
from tests.e2e.conftest import start_stack, stop_stack

REPO = "octo-org/hello-world"
GITHUB_TIMEOUT = 30


def control(stack, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(stack.emulators["githubApiUrl"] + path, method="POST" if body else "GET",
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def state(stack) -> dict:
    return control(stack, f"/_emulator/state?repo={REPO}")


def call(client, action: str, **params) -> dict:
    return client.request(action, timeout=GITHUB_TIMEOUT, **params)


def data(frame: dict) -> dict:
    assert frame["type"] == "result", frame
    return frame["data"]


def error_code(frame: dict) -> str:
    assert frame["type"] == "error", frame
    return frame["error"]["code"]


def git_blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@pytest.fixture
def client(stack):
    with stack.connect() as connected:
        yield connected


@pytest.fixture
def throttle(stack):
    """The emulator's rate limit control, switched off again whatever the test did."""
    yield lambda **settings: control(stack, "/_emulator/rate-limit", settings)
    control(stack, "/_emulator/rate-limit", {"count": 0})


def test_list_repositories_of_the_installation(client):
    listed = data(call(client, "github.repos"))
    assert {"fullName": REPO, "defaultBranch": "main", "private": False} in listed["repos"]
    assert listed["truncated"] is False


def test_tree_and_readme_of_the_default_branch(client):
    entries = data(call(client, "github.tree", repo=REPO))["entries"]
    by_path = {e["path"]: e for e in entries}
    readme = emulator.SEED_FILES["README.md"]
    assert by_path["README.md"] == {"path": "README.md", "type": "file", "size": len(readme)}
    assert by_path["src"]["type"] == "dir" and by_path["src/app.py"]["type"] == "file"

    subtree = data(call(client, "github.tree", repo=REPO, ref="main", path="src"))["entries"]
    assert [e["path"] for e in subtree] == ["src/app.py"]

    file = data(call(client, "github.file", repo=REPO, path="README.md"))
    assert file["content"] == readme.decode() and file["path"] == "README.md"
    assert file["sha"] == git_blob_sha(readme)


def test_pull_request_with_two_files_is_one_commit_on_a_new_branch(stack, client):
    main_sha = state(stack)["refs"]["heads/main"]
    branch = f"ide/change-{time.time_ns()}"
    readme = "# hello-world\n\nChanged from the IDE.\n"
    app_py = 'print("changed")\n'
    pr = data(call(client, "github.pr", repo=REPO, base="main", branch=branch, title="Two changes",
                   body="Edits made in the IDE.",
                   files=[{"path": "README.md", "content": readme}, {"path": "src/app.py", "content": app_py}]))
    assert pr["branch"] == branch and pr["number"] >= 1 and pr["url"].endswith(f"/{REPO}/pull/{pr['number']}")

    for path, content in (("README.md", readme), ("src/app.py", app_py)):
        assert data(call(client, "github.file", repo=REPO, path=path, ref=branch))["content"] == content
    original = emulator.SEED_FILES["README.md"].decode()
    assert data(call(client, "github.file", repo=REPO, path="README.md", ref="main"))["content"] == original

    after = state(stack)
    assert after["refs"][f"heads/{branch}"] == pr["commitSha"] and after["refs"]["heads/main"] == main_sha
    commit = after["commits"][pr["commitSha"]]
    assert commit["parents"] == [main_sha]  # a single commit on top of base
    assert commit["message"].startswith("Two changes\n") and "Requested-by: dev" in commit["message"]
    pull = next(p for p in after["pulls"] if p["number"] == pr["number"])
    assert pull["head"] == {"ref": branch, "sha": pr["commitSha"]} and pull["base"] == {"ref": "main"}
    assert pull["body"].startswith("Edits made in the IDE.") and pull["body"].endswith("Requested-by: dev")
    unchanged = {e["path"] for e in data(call(client, "github.tree", repo=REPO, ref=branch))["entries"]}
    assert "assets/logo.png" in unchanged  # the rest of base's tree is kept

    again = call(client, "github.pr", repo=REPO, base="main", branch=branch, title="Again",
                 files=[{"path": "README.md", "content": "x"}])
    assert error_code(again) == "BAD_REQUEST" and "already exists" in again["error"]["message"]


@pytest.fixture
def fault(stack):
    """The emulator's fault control, cleared again whatever the test did."""
    yield lambda **settings: control(stack, "/_emulator/fault", settings)
    control(stack, "/_emulator/fault", {"count": 0})


def open_pr(client, branch: str) -> dict:
    return call(client, "github.pr", repo=REPO, base="main", branch=branch, title="Change",
                files=[{"path": "README.md", "content": f"changed on {branch}\n"}])


def pulls_from(stack, branch: str) -> list[dict]:
    return [p for p in state(stack)["pulls"] if p["head"]["ref"] == branch]


@pytest.mark.parametrize("made_anyway", [True, False])
def test_a_server_error_on_opening_the_pull_request_still_opens_exactly_one(stack, client, fault, made_anyway):
    branch = f"ide/retry-{time.time_ns()}"
    faults = state(stack)["stats"]["faults"]
    fault(method="POST", path=f"/repos/{REPO}/pulls", status=502, count=1, after=made_anyway)
    pr = data(open_pr(client, branch))
    assert state(stack)["stats"]["faults"] == faults + 1  # the 502 was answered
    [pull] = pulls_from(stack, branch)
    assert pr["number"] == pull["number"] and pr["branch"] == branch and pull["head"]["sha"] == pr["commitSha"]


def test_a_pull_request_github_keeps_failing_names_the_branch_it_left(stack, client, fault):
    branch = f"ide/broken-{time.time_ns()}"
    fault(method="POST", path=f"/repos/{REPO}/pulls", status=503, count=100)
    frame = open_pr(client, branch)
    assert error_code(frame) == "UPSTREAM_ERROR"
    assert f"branch '{branch}' was created in {REPO}" in frame["error"]["message"]
    assert f"heads/{branch}" in state(stack)["refs"] and pulls_from(stack, branch) == []


def test_a_branch_creation_whose_answer_is_lost_says_the_branch_may_exist(stack, client, fault):
    branch = f"ide/lost-{time.time_ns()}"
    fault(method="POST", path=f"/repos/{REPO}/git/refs", status=502, count=100, after=True)
    frame = open_pr(client, branch)
    assert error_code(frame) == "UPSTREAM_ERROR"
    assert f"branch '{branch}' may have been created in {REPO}" in frame["error"]["message"]
    assert f"heads/{branch}" in state(stack)["refs"] and pulls_from(stack, branch) == []


def test_reading_what_is_not_a_text_file(client):
    assert error_code(call(client, "github.file", repo=REPO, path="assets/logo.png")) == "BAD_REQUEST"
    assert error_code(call(client, "github.file", repo=REPO, path="src")) == "BAD_REQUEST"
    assert error_code(call(client, "github.file", repo=REPO, path="missing.txt")) == "NOT_FOUND"
    assert error_code(call(client, "github.file", repo="octo-org/nope", path="README.md")) == "NOT_FOUND"
    assert error_code(call(client, "github.tree", repo=REPO, ref="no-such-branch")) == "NOT_FOUND"


@pytest.mark.parametrize("action, params", [
    ("github.tree", {"repo": "not-a-repo"}),
    ("github.tree", {"repo": "-bad/owner"}),
    ("github.tree", {"repo": REPO, "path": "../etc"}),
    ("github.tree", {"repo": REPO, "ref": "a b"}),
    ("github.file", {"repo": REPO}),
    ("github.file", {"repo": REPO, "path": "/abs"}),
    ("github.pr", {"repo": REPO, "branch": "bad..name", "title": "t", "files": [{"path": "a", "content": ""}]}),
    ("github.pr", {"repo": REPO, "branch": "x.lock", "title": "t", "files": [{"path": "a", "content": ""}]}),
    ("github.pr", {"repo": REPO, "branch": "ok", "title": "t", "files": []}),
    ("github.pr", {"repo": REPO, "branch": "ok", "title": "t", "files": [{"path": "a/../b", "content": ""}]}),
    ("github.pr", {"repo": REPO, "branch": "ok", "title": " ", "files": [{"path": "a", "content": ""}]}),
])
def test_bad_parameters_are_refused_before_github_is_called(stack, client, action, params):
    before = state(stack)["stats"]["requests"]
    assert error_code(call(client, action, **params)) == "BAD_REQUEST"
    assert state(stack)["stats"]["requests"] == before


def test_forged_or_expired_app_jwt_is_refused_by_the_emulator(stack):
    now = int(time.time())
    forged_key, _ = emulator.new_app_key()
    forged = jwt.encode({"iat": now - 60, "exp": now + 300, "iss": emulator.APP_ID}, forged_key, algorithm="RS256")
    secret = json.loads(secrets_client(stack).get_secret_value(SecretId=secret_arn(stack))["SecretString"])
    expired = jwt.encode({"iat": now - 900, "exp": now - 300, "iss": secret["appId"]}, secret["privateKey"],
                         algorithm="RS256")
    too_long = jwt.encode({"iat": now, "exp": now + 3600, "iss": secret["appId"]}, secret["privateKey"],
                          algorithm="RS256")
    for token in (forged, expired, too_long):
        request = urllib.request.Request(
            f"{stack.emulators['githubApiUrl']}/app/installations/{secret['installationId']}/access_tokens",
            method="POST", headers={"Authorization": f"Bearer {token}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401


def test_key_rotation_the_worker_refetches_the_secret_once_and_recovers(stack, client):
    assert data(call(client, "github.repos"))["repos"]  # the worker now holds the current secret and a token
    private, public = emulator.new_app_key()
    secrets_client(stack).put_secret_value(SecretId=secret_arn(stack), SecretString=emulator.secret_document(private))
    control(stack, "/_emulator/app-key", {"publicKey": public, "revokeTokens": True})
    before = state(stack)["stats"]

    assert data(call(client, "github.repos"))["repos"]
    after = state(stack)["stats"]
    assert after["jwtRefused"] == before["jwtRefused"] + 1  # the cached old key, refused once
    assert after["tokensIssued"] == before["tokensIssued"] + 1  # then a token with the refetched key


@pytest.mark.parametrize("kind", ["secondary", "primary"])
def test_rate_limit_is_waited_out_then_the_call_succeeds(stack, client, throttle, kind):
    before = state(stack)["stats"]["rateLimited"]
    throttle(count=1, retryAfter=1, kind=kind)
    started = time.monotonic()
    assert data(call(client, "github.file", repo=REPO, path="README.md"))["path"] == "README.md"
    assert time.monotonic() - started >= 0.9
    assert state(stack)["stats"]["rateLimited"] == before + 1


def test_rate_limit_longer_than_the_wait_bound_gives_up_with_retry_after(stack, client, throttle):
    throttle(count=1000, retryAfter=120, kind="secondary")
    started = time.monotonic()
    frame = call(client, "github.repos")
    assert error_code(frame) == "UPSTREAM_THROTTLED" and frame["error"]["retryAfter"] == 120
    assert time.monotonic() - started < 5  # it did not sleep past its bound


def secrets_client(stack):
    return boto3.client("secretsmanager", endpoint_url=stack.document["awsEndpointUrl"], region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def secret_arn(stack) -> str:
    return secrets_client(stack).describe_secret(SecretId="llm-ide/local/github-app")["ARN"]


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory):
    """A stack of its own: GitHub for the group github-users only (dev2 is in it, dev is not), and
    Lambda contexts that say 6 s, so that the github_worker's time limit comes 3 s in."""
    stack = start_stack(tmp_path_factory.mktemp("github-stack"),
                        env={"GITHUB_ALLOWED_GROUPS": "github-users,admins", "DEV_LAMBDA_TIMEOUT_SECONDS": "6"})
    try:
        cognito = boto3.client("cognito-idp", endpoint_url=stack.document["awsEndpointUrl"],
                               region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local")
        pool = stack.document["cognito"]["userPoolId"]
        cognito.create_group(GroupName="github-users", UserPoolId=pool)
        cognito.admin_add_user_to_group(UserPoolId=pool, Username="dev2", GroupName="github-users")
        yield stack
    finally:
        stop_stack(stack.process)


def test_only_users_in_the_allowed_groups_may_use_github(own_stack):
    with own_stack.connect("dev") as outsider:
        frame = call(outsider, "github.repos")
        assert error_code(frame) == "FORBIDDEN"
        assert error_code(call(outsider, "github.file", repo=REPO, path="README.md")) == "FORBIDDEN"
    with own_stack.connect("dev2") as member:
        assert {r["fullName"] for r in data(call(member, "github.repos"))["repos"]} == {REPO}


def test_a_slow_github_is_answered_timeout_before_the_lambda_timeout(own_stack):
    control(own_stack, "/_emulator/fault", {"method": "POST", "path": f"/repos/{REPO}/git/blobs", "count": 10,
                                            "status": 0, "delay": 1.0})  # each blob takes a second
    branch = f"ide/slow-{time.time_ns()}"
    with own_stack.connect("dev2") as member:
        started = time.monotonic()
        frame = call(member, "github.pr", repo=REPO, base="main", branch=branch, title="Slow",
                     files=[{"path": f"f{i}.txt", "content": str(i)} for i in range(5)])
        elapsed = time.monotonic() - started
    assert error_code(frame) == "TIMEOUT" and frame["id"]
    assert 2.5 < elapsed < 5  # stopped at 6 - 3 s, in time to answer within the 6 s
    assert f"heads/{branch}" not in state(own_stack)["refs"]
