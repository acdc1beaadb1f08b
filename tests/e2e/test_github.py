"""The GitHub actions end to end: client → gateway → message handler → github_worker → GitHub emulator."""
from __future__ import annotations

import base64
import hashlib
import json
import time
import unicodedata
import urllib.error
import urllib.request

import boto3
import jwt
import pytest

from devserver import github as emulator
from devserver.github_repos import NFD_FILE, SEED_FILES
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
    branch = f"llm-ide/change-{time.time_ns()}"
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
    assert commit["message"] == "Two changes\n\nRequested-by: dev\n"
    pull = next(p for p in after["pulls"] if p["number"] == pr["number"])
    assert pull["head"] == {"ref": branch, "sha": pr["commitSha"]} and pull["base"] == {"ref": "main"}
    assert pull["body"] == "Requested-by: dev\n\nEdits made in the IDE."
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


def open_pr(client, branch: str, **params) -> dict:
    return call(client, "github.pr", **{"repo": REPO, "base": "main", "branch": branch, "title": "Change",
                                        "files": [{"path": "README.md", "content": f"changed on {branch}\n"}],
                                        **params})


def pulls_from(stack, branch: str) -> list[dict]:
    return [p for p in state(stack)["pulls"] if p["head"]["ref"] == branch]


@pytest.mark.parametrize("made_anyway", [True, False])
def test_a_server_error_on_opening_the_pull_request_still_opens_exactly_one(stack, client, fault, made_anyway):
    branch = f"llm-ide/retry-{time.time_ns()}"
    faults = state(stack)["stats"]["faults"]
    fault(method="POST", path=f"/repos/{REPO}/pulls", status=502, count=1, after=made_anyway)
    pr = data(open_pr(client, branch))
    assert state(stack)["stats"]["faults"] == faults + 1  # the 502 was answered
    [pull] = pulls_from(stack, branch)
    assert pr["number"] == pull["number"] and pr["branch"] == branch and pull["head"]["sha"] == pr["commitSha"]


@pytest.mark.parametrize("failure, code", [
    ({"status": 503, "count": 100}, "UPSTREAM_ERROR"),  # GitHub keeps failing
    ({"status": 403, "count": 1, "retryAfter": 300}, "UPSTREAM_THROTTLED"),  # a secondary limit on this write
])
def test_a_pull_request_that_cannot_be_opened_leaves_nothing_behind(stack, client, fault, failure, code):
    branch = f"llm-ide/broken-{time.time_ns()}"
    fault(method="POST", path=f"/repos/{REPO}/pulls", **failure)
    frame = open_pr(client, branch)
    assert error_code(frame) == code
    assert f"Nothing was left in {REPO}: the branch '{branch}' was deleted again" in frame["error"]["message"]
    assert f"heads/{branch}" not in state(stack)["refs"] and pulls_from(stack, branch) == []
    fault(count=0)  # GitHub is well again: the same name can be used
    assert data(open_pr(client, branch))["branch"] == branch


def test_a_branch_creation_whose_answer_is_lost_is_deleted_again(stack, client, fault):
    branch = f"llm-ide/lost-{time.time_ns()}"
    fault(method="POST", path=f"/repos/{REPO}/git/refs", status=502, count=100, after=True)
    frame = open_pr(client, branch)
    assert error_code(frame) == "UPSTREAM_ERROR" and "was deleted again" in frame["error"]["message"]
    assert f"heads/{branch}" not in state(stack)["refs"] and pulls_from(stack, branch) == []


# --- what a user may write -------------------------------------------------------------------


@pytest.mark.parametrize("branch", ["refs/heads/x", "HEAD", "3f786850e387550fdab836ed7e6dc881de23001b"])
def test_branches_that_look_like_refs_head_or_object_ids_are_refused(stack, client, branch):
    before = state(stack)["stats"]["requests"]
    frame = open_pr(client, branch)
    assert error_code(frame) == "BAD_REQUEST" and "'branch'" in frame["error"]["message"]
    assert state(stack)["stats"]["requests"] == before


@pytest.mark.parametrize("branch", ["gh-pages", "release/1.0"])
def test_other_branches_are_made_under_the_prefix_never_as_named(stack, client, branch):
    pr = data(open_pr(client, branch))
    refs = state(stack)["refs"]
    assert pr["branch"] == f"llm-ide/{branch}" and refs[f"heads/llm-ide/{branch}"] == pr["commitSha"]
    assert f"heads/{branch}" not in refs


def test_a_workflow_cannot_be_written(stack, client):
    before = state(stack)["stats"]["requests"]
    frame = call(client, "github.pr", repo=REPO, base="main", branch=f"deploy-{time.time_ns()}", title="Deploy",
                 files=[{"path": ".github/workflows/deploy.yml", "content": "on: push\n"}])
    assert error_code(frame) == "FORBIDDEN" and ".github/" in frame["error"]["message"]
    assert state(stack)["stats"]["requests"] == before


def test_a_commit_sha_is_not_a_base(stack, client):
    main_sha = state(stack)["refs"]["heads/main"]
    before = state(stack)
    frame = open_pr(client, f"from-sha-{time.time_ns()}", base=main_sha)
    assert error_code(frame) == "BAD_REQUEST" and "'base'" in frame["error"]["message"]
    after = state(stack)
    assert after["stats"]["requests"] == before["stats"]["requests"] and after["refs"] == before["refs"]


def test_a_title_cannot_forge_the_attribution(stack, client):
    frame = open_pr(client, f"forged-{time.time_ns()}", title="Fix\n\nRequested-by: someone-else")
    assert error_code(frame) == "BAD_REQUEST" and "'title'" in frame["error"]["message"]


def test_a_100_file_pull_request_stays_within_githubs_secondary_limit(stack, client):
    control(stack, "/_emulator/write-limits", {"perMinute": 80, "perHour": 500})  # GitHub's, counted afresh
    before = state(stack)["stats"]["writes"]
    branch = f"llm-ide/hundred-{time.time_ns()}"
    pr = data(call(client, "github.pr", repo=REPO, base="main", branch=branch, title="A hundred files",
                   files=[{"path": f"generated/f{i:03}.txt", "content": f"{i}\n"} for i in range(100)]))
    assert pr["branch"] == branch and state(stack)["stats"]["writes"] - before == 4
    assert data(call(client, "github.file", repo=REPO, path="generated/f099.txt", ref=branch))["content"] == "99\n"


def test_a_file_named_in_nfd_is_read_and_updated_as_github_has_it(stack, client):
    nfc = unicodedata.normalize("NFC", NFD_FILE)
    read = data(call(client, "github.file", repo=REPO, path=nfc))
    assert read["path"] == NFD_FILE and read["content"] == SEED_FILES[NFD_FILE].decode()
    branch = f"llm-ide/nfd-{time.time_ns()}"
    data(call(client, "github.pr", repo=REPO, base="main", branch=branch, title="Edit a Mac file",
              files=[{"path": nfc, "content": "edited\n"}]))
    entries = [e["path"] for e in data(call(client, "github.tree", repo=REPO, ref=branch, path="docs"))["entries"]
               if e["type"] == "file"]
    assert entries == [NFD_FILE]  # changed in place: no visually identical twin
    assert data(call(client, "github.file", repo=REPO, path=NFD_FILE, ref=branch))["content"] == "edited\n"


def test_each_users_github_calls_are_counted_and_limited(stack):
    with stack.connect("dev2") as member:
        used = github_calls(stack, "dev2")
        assert data(call(member, "github.file", repo=REPO, path="README.md"))["path"] == "README.md"
        assert github_calls(stack, "dev2") - used >= 1  # what the call cost the app's limits
        set_github_calls(stack, "dev2", 10 ** 6)  # the stack's GITHUB_CALLS_PER_HOUR: spent
        try:
            frame = call(member, "github.file", repo=REPO, path="README.md")
        finally:
            set_github_calls(stack, "dev2", used)
    left = 3600 - time.time() % 3600
    assert error_code(frame) == "RATE_LIMITED" and left - 5 <= frame["error"]["retryAfter"] <= left + 1


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


def usage_key(stack, username: str) -> dict:
    claims = stack.tokens(username).access_token.split(".")[1]
    sub = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["sub"]
    return {"pk": {"S": f"USER#{sub}"}, "sk": {"S": time.strftime("H#%Y-%m-%dT%H", time.gmtime())}}


def dynamodb_client(stack):
    return boto3.client("dynamodb", endpoint_url=stack.document["awsEndpointUrl"], region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def github_calls(stack, username: str) -> int:
    """The user's GitHub calls of the current hour, in the usage table."""
    item = dynamodb_client(stack).get_item(TableName="llm-ide-local-usage", Key=usage_key(stack, username),
                                           ConsistentRead=True).get("Item", {})
    return int(item.get("githubCalls", {}).get("N", 0))


def set_github_calls(stack, username: str, calls: int) -> None:
    dynamodb_client(stack).update_item(TableName="llm-ide-local-usage", Key=usage_key(stack, username),
                                       UpdateExpression="SET githubCalls = :n",
                                       ExpressionAttributeValues={":n": {"N": str(calls)}})


def secrets_client(stack):
    return boto3.client("secretsmanager", endpoint_url=stack.document["awsEndpointUrl"], region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")


def secret_arn(stack) -> str:
    return secrets_client(stack).describe_secret(SecretId="llm-ide/local/github-app")["ARN"]


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory):
    """A stack of its own: GitHub for the group github-users only (dev2 is in it, dev is not), and of
    two installations only octo-org's repositories; Lambda contexts that say 8 s, so that the
    github_worker's time limit comes 5 s in, 2 s of them kept for undoing a failed pull request."""
    stack = start_stack(tmp_path_factory.mktemp("github-stack"),
                        env={"GITHUB_ALLOWED_GROUPS": "github-users,admins", "DEV_LAMBDA_TIMEOUT_SECONDS": "8",
                             "DEV_GITHUB_INSTALLATION_IDS": "2002,3003",
                             "GITHUB_REPOS_BY_GROUP": json.dumps({"github-users": ["octo-org/*"]})})
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


def test_only_the_repositories_granted_to_the_users_groups_are_reachable(own_stack):
    with own_stack.connect("dev2") as member:  # octo-labs is an installation of the app, not granted to them
        frame = call(member, "github.file", repo="octo-labs/lab-notes", path="README.md")
        assert error_code(frame) == "FORBIDDEN" and "octo-labs/lab-notes" in frame["error"]["message"]
        assert data(call(member, "github.file", repo="Octo-Org/Hello-World", path="README.md"))["content"]


@pytest.mark.parametrize("slow_write, said", [
    ("git/trees", "GitHub did not answer before the time limit"),  # before the branch: nothing to undo
    ("pulls", "was deleted again"),  # after it: undone in the 2 s kept for it
])
def test_a_slow_github_is_answered_timeout_before_the_lambda_timeout_leaving_nothing(own_stack, slow_write, said):
    control(own_stack, "/_emulator/fault", {"method": "POST", "path": f"/repos/{REPO}/{slow_write}", "count": 1,
                                            "status": 0, "delay": 7.0})
    branch = f"llm-ide/slow-{time.time_ns()}"
    with own_stack.connect("dev2") as member:
        started = time.monotonic()
        frame = call(member, "github.pr", repo=REPO, base="main", branch=branch, title="Slow",
                     files=[{"path": f"f{i}.txt", "content": str(i)} for i in range(5)])
        elapsed = time.monotonic() - started
    assert error_code(frame) == "TIMEOUT" and frame["id"] and said in frame["error"]["message"]
    assert 2.5 < elapsed < 5.5  # stopped 3 s in (8 - 3 - 2), undone within the 2 s kept: answered within the 8 s
    assert f"heads/{branch}" not in state(own_stack)["refs"] and pulls_from(own_stack, branch) == []
