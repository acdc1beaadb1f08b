"""The GitHub gate and parameter checks: the message handler with real events, and the worker's own
checks (the groups, its payload, the time Lambda leaves it)."""
from __future__ import annotations

import json
import time

import pytest

import app as chalice_app
from chalicelib.errors import BadRequest
from chalicelib.github import params as github_params
from chalicelib.github import worker
from chalicelib.github.credentials import SecretSource
from chalicelib.protocol import Params
from tests.conftest import reset_app_caches
from tests.fakes import LambdaContext
from tests.handler_calls import connect, login, message


def groups_env(monkeypatch, value: str) -> None:
    monkeypatch.setenv("GITHUB_ALLOWED_GROUPS", value)
    reset_app_caches()


def test_a_user_outside_the_allowed_groups_is_forbidden_and_no_worker_starts(app_env, boto, monkeypatch,
                                                                             started, sender):
    groups_env(monkeypatch, "github-users")
    connect("conn-g1=", headers={"Authorization": f"Bearer {login(boto, app_env)}"})
    message("conn-g1=", json.dumps({"action": "github.repos", "id": "g1"}))
    (frame,) = sender.frames["conn-g1="]
    assert frame["id"] == "g1" and frame["error"]["code"] == "FORBIDDEN"
    assert started == []


def test_an_allowed_user_starts_the_worker_with_the_verified_identity(app_env, boto, monkeypatch, started, sender):
    cognito = boto("cognito-idp")
    group = f"gh-{time.time_ns()}"
    cognito.create_group(GroupName=group, UserPoolId=app_env.user_pool_id)
    cognito.admin_add_user_to_group(UserPoolId=app_env.user_pool_id, Username="dev2", GroupName=group)
    groups_env(monkeypatch, f"other,{group}")
    connect("conn-g2=", headers={"Authorization": f"Bearer {login(boto, app_env, 1)}"})
    message("conn-g2=", json.dumps({"action": "github.file", "id": "f1", "repo": "o/r", "path": "a/b.txt",
                                    "user": {"username": "forged", "groups": [group]}}))
    assert "conn-g2=" not in sender.frames  # the worker answers, not the handler
    ((function, payload),) = started
    assert function == "llm-ide-test-github_worker"
    assert payload["requestId"] == "f1" and payload["action"] == "github.file"
    assert payload["params"] == {"repo": "o/r", "ref": None, "path": "a/b.txt"}
    assert payload["user"]["username"] == "dev2" and group in payload["user"]["groups"]
    assert payload["connectionId"] == "conn-g2=" and payload["endpoint"] == "http://127.0.0.1:9/test"


def test_empty_allowed_groups_let_everyone_in(app_env, boto, monkeypatch, started, sender):
    groups_env(monkeypatch, "")
    connect("conn-g3=", headers={"Authorization": f"Bearer {login(boto, app_env)}"})
    message("conn-g3=", json.dumps({"action": "github.repos", "id": "r1"}))
    assert len(started) == 1 and "conn-g3=" not in sender.frames


def test_bad_parameters_never_start_a_worker(app_env, boto, started, sender):
    connect("conn-g4=", headers={"Authorization": f"Bearer {login(boto, app_env)}"})
    message("conn-g4=", json.dumps({"action": "github.tree", "id": "t1", "repo": "o/r", "path": "../x"}))
    assert sender.frames["conn-g4="][0]["error"]["code"] == "BAD_REQUEST" and started == []


def worker_event(groups, **extra):
    return {"connectionId": "conn-w=", "endpoint": "http://127.0.0.1:9/test", "requestId": "w1",
            "action": "github.repos", "params": {}, "user": {"sub": "s", "username": "dev", "groups": groups},
            **extra}


def test_the_worker_checks_the_groups_again_before_reading_the_secret(app_env, monkeypatch, sender):
    groups_env(monkeypatch, "github-users")
    monkeypatch.setattr(SecretSource, "_fetch", lambda self: pytest.fail("the secret must not be read"))
    chalice_app.github_worker(worker_event(["staff"]), None)
    assert sender.frames["conn-w="] == [{"type": "error", "id": "w1", "error": {
        "code": "FORBIDDEN", "message": "GitHub access is not granted to this user"}}]


def test_the_worker_validates_its_payload(app_env, monkeypatch, sender):
    monkeypatch.setattr(SecretSource, "_fetch", lambda self: pytest.fail("GitHub must not be called"))
    chalice_app.github_worker(worker_event([], action="github.file", params={"repo": "o/r", "path": "/etc"}), None)
    chalice_app.github_worker(worker_event([], action="github.delete"), None)
    assert [f["error"]["code"] for f in sender.frames["conn-w="]] == ["BAD_REQUEST", "BAD_REQUEST"]


def test_an_unconfigured_secret_is_internal_without_detail_leaks(app_env, monkeypatch, sender):
    monkeypatch.delenv("GITHUB_SECRET_ARN")
    reset_app_caches()
    chalice_app.github_worker(worker_event([]), None)
    assert sender.frames["conn-w="][0]["error"]["code"] == "INTERNAL"


@pytest.mark.parametrize("name", ["main", "feature/x", "ide/change-1", "v1.2", "a-b_c"])
def test_valid_branch_names(name):
    assert github_params.validate_ref_name(name, field="branch") == name


@pytest.mark.parametrize("name, why", [
    ("", "it is empty"), ("a..b", "it contains '..'"), ("a b", "it contains a space"),
    ("-x", "it starts with '-'"), ("/x", "it starts with '/'"), ("x/", "it ends with '/'"), ("x.", "it ends with '.'"),
    ("x.lock", "its component 'x.lock' ends with '.lock'"), ("a/b.lock/c", "its component 'b.lock' ends with '.lock'"),
    ("a/.hidden", "its component '.hidden' starts with '.'"), ("a//b", "it contains '//' (an empty component)"),
    ("@", "it is '@', which git reads as HEAD"), ("a@{b", "it contains '@{'"), ("a~1", "it contains '~'"),
    ("a^", "it contains '^'"), ("a:b", "it contains ':'"), ("a?", "it contains '?'"), ("a*", "it contains '*'"),
    ("a[b", "it contains '['"), ("a\\b", "it contains '\\\\'"), ("a\x00b", "it contains U+0000"),
    ("a\x7fb", "it contains U+007F"), ("fix\u200btypo", "it contains U+200B, an invisible or separator character"),
    ("x" * 256, "it is 256 bytes of UTF-8, longer than the 255 a ref name may take"),
    ("\u00e9" * 128, "it is 256 bytes of UTF-8"),
])
def test_invalid_branch_names_say_which_rule_they_break(name, why):
    """The refusal said only "not a valid git branch name", leaving the user to guess which of git's rules."""
    with pytest.raises(BadRequest) as refused:
        github_params.validate_ref_name(name, field="branch")
    assert refused.value.message.startswith(f"'branch' is not a valid git branch name: {why}")


@pytest.mark.parametrize("repo, ok", [("octo-org/hello-world", True), ("a/b.c_d-e", True), ("o/..", False),
                                      ("o", False), ("o/r/x", False), ("-o/r", False), ("o-/r", False),
                                      ("o--o/r", False), ("o/r r", False), ("o" * 40 + "/r", False)])
def test_repository_names(repo, ok):
    if ok:
        assert github_params.validate_repo(repo) == repo
    else:
        with pytest.raises(BadRequest):
            github_params.validate_repo(repo)


def test_pull_request_bounds():
    files = [{"path": f"f{i}.txt", "content": ""} for i in range(github_params.MAX_PR_FILES + 1)]
    with pytest.raises(BadRequest):
        github_params.validate("github.pr", Params({"repo": "o/r", "branch": "b", "title": "t", "files": files}))
    twice = [{"path": "a", "content": "1"}, {"path": "a", "content": "2"}]
    with pytest.raises(BadRequest, match="twice"):
        github_params.validate("github.pr", Params({"repo": "o/r", "branch": "b", "title": "t", "files": twice}))


@pytest.mark.parametrize("file, words", [
    ({"content": "x"}, "'files[1].path' is required"),
    ({"path": 7, "content": "x"}, "'files[1].path' must be a string"),
    ({"path": "", "content": "x"}, "'files[1].path' must not be empty"),
    ({"path": "b", "content": 5}, "'files[1].content' must be a string"),
    ({"path": "b"}, "'files[1].content' is required"),
])
def test_a_bad_file_of_a_pull_request_is_named_by_its_place(file, words):
    files = [{"path": "a", "content": "1"}, file]
    with pytest.raises(BadRequest) as refused:
        github_params.validate("github.pr", Params({"repo": "o/r", "branch": "b", "title": "t", "files": files}))
    assert refused.value.message == words


def test_an_answer_too_large_for_one_frame_becomes_payload_too_large():
    from chalicelib.github.worker import fit_in_one_frame
    from chalicelib.protocol import MAX_SERVER_FRAME_BYTES, result

    small = result("r", {"content": "x" * 1000})
    assert fit_in_one_frame(small, "r") is small
    escaped = result("r", {"content": "\x01" * (MAX_SERVER_FRAME_BYTES // 4)})  # 32 KiB of text, 192 KiB of JSON
    frame = fit_in_one_frame(escaped, "r")
    assert frame["type"] == "error" and frame["error"]["code"] == "PAYLOAD_TOO_LARGE" and frame["id"] == "r"


def test_the_lambda_worker_answers_timeout_when_its_time_is_spent(app_env, monkeypatch, sender):
    called: list[str] = []

    def send(self, method, url, *, headers, body, timeout=None):
        called.append(url)
        raise AssertionError("no GitHub call may start")

    monkeypatch.setattr(worker.HttpTransport, "send", send)
    monkeypatch.setattr(worker.SecretSource, "_fetch", lambda self: pytest.fail("the secret must not be read"))
    chalice_app.github_worker(worker_event([]), LambdaContext(worker.TIME_LIMIT_MARGIN_MS - 1))
    [frame] = sender.frames["conn-w="]
    assert frame["id"] == "w1" and frame["error"]["code"] == "TIMEOUT" and called == []
