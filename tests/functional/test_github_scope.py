"""What a user may write on GitHub: branches, base, protected paths, repositories per group, the
attribution; checked by the parameters and the scope, in the message handler and again in the worker."""
from __future__ import annotations

import json

import pytest

import app as chalice_app
from chalicelib.config import load_settings
from chalicelib.errors import BadRequest, Forbidden, PayloadTooLarge
from chalicelib.github import params as github_params
from chalicelib.github.credentials import SecretSource
from chalicelib.github.scope import GitHubScope
from chalicelib.protocol import Params
from tests.functional.test_github_access import groups_env, worker_event
from tests.handler_calls import connect, login, message

BASE = {"COGNITO_USER_POOL_ID": "us-east-1_Test1", "COGNITO_APP_CLIENT_IDS": "c"}
SHA1 = "3f786850e387550fdab836ed7e6dc881de23001b"


def scope(**env) -> GitHubScope:
    return GitHubScope.from_settings(load_settings({**BASE, **env}))


def pull_request(**overrides) -> dict:
    raw = {"repo": "octo-org/hello-world", "branch": "fix-typo", "title": "Fix a typo",
           "files": [{"path": "README.md", "content": "x"}], **overrides}
    return github_params.validate("github.pr", Params(raw))


def authorized(groups=(), env=None, **overrides) -> dict:
    return scope(**(env or {})).authorize("github.pr", pull_request(**overrides), groups)


# --- branches ----------------------------------------------------------------------------


@pytest.mark.parametrize("requested, branch", [
    ("gh-pages", "llm-ide/gh-pages"),  # a name people and Pages use: the app makes its own beside it
    ("release/1.0", "llm-ide/release/1.0"),
    ("fix-typo", "llm-ide/fix-typo"),
    ("llm-ide/fix-typo", "llm-ide/fix-typo"),  # a branch the server answered, given again
    ("deadbeef", "llm-ide/deadbeef"),  # short hex is a name; only full object ids are refused
])
def test_a_pull_request_branch_lives_under_the_prefix(requested, branch):
    assert authorized(branch=requested)["branch"] == branch


def test_the_prefix_is_configurable():
    assert authorized(branch="x", env={"GITHUB_BRANCH_PREFIX": "bots/ide/"})["branch"] == "bots/ide/x"


@pytest.mark.parametrize("requested", [
    "refs/heads/x", "refs/heads/main", "heads/main", "tags/v1", "remotes/origin/main", "REFS/heads/x",
    "HEAD", "head", "FETCH_HEAD", "ORIG_HEAD", "x/HEAD", "llm-ide/HEAD", "stash",
    SHA1, SHA1.upper(), "a" * 64, f"fix/{SHA1}", f"llm-ide/{SHA1}",
    "llm-ide/", "fix\u200btypo", "fix\u202etypo", "fix\u00a0typo", "fix\u2028typo",
])
def test_branches_that_look_like_refs_head_or_object_ids_are_refused(requested):
    with pytest.raises(BadRequest, match="'branch'"):
        authorized(branch=requested)


def test_a_branch_the_prefix_makes_too_long_is_refused_saying_so():
    with pytest.raises(BadRequest) as refused:
        authorized(branch="x" * 250)
    assert refused.value.message == ("'branch' is not a valid git branch name: it is 258 bytes of UTF-8, longer than "
                                     "the 255 a ref name may take, under the prefix 'llm-ide/'")


@pytest.mark.parametrize("base", [SHA1, "refs/heads/main", "heads/main", "HEAD", "a" * 64])
def test_base_must_name_a_branch(base):
    with pytest.raises(BadRequest, match="'base'"):
        pull_request(base=base)


def test_a_plain_base_is_kept():
    assert pull_request(base="release/1.0")["base"] == "release/1.0"


# --- protected paths ---------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    ".github/workflows/deploy.yml", ".github", ".GitHub/workflows/deploy.yml", ".github./workflows/x.yml",
    ".git\u200bhub/workflows/x.yml", "\uff0egithub/workflows/x.yml", ".ｇｉｔｈｕｂ/workflows/x.yml",
])
def test_protected_paths_are_forbidden_in_every_spelling(path):
    with pytest.raises(Forbidden, match=r"files\[1\]\.path.*protected path '\.github/'"):
        authorized(files=[{"path": "README.md", "content": "x"}, {"path": path, "content": "on: push"}])


def test_the_protected_path_groups_may_write_them():
    env = {"GITHUB_PROTECTED_PATH_GROUPS": "release-managers"}
    files = [{"path": ".github/workflows/deploy.yml", "content": "on: push"}]
    assert authorized(groups=("staff", "release-managers"), env=env, files=files)["files"] == files
    with pytest.raises(Forbidden):
        authorized(groups=("staff",), env=env, files=files)


def test_protected_paths_are_configurable():
    env = {"GITHUB_PROTECTED_PATHS": ".github/,CODEOWNERS,deploy/prod/"}
    for path in ("CODEOWNERS", "codeowners", "deploy/prod/values.yaml"):
        with pytest.raises(Forbidden):
            authorized(env=env, files=[{"path": path, "content": "x"}])
    assert authorized(env=env, files=[{"path": "deploy/staging/values.yaml", "content": "x"}])
    assert authorized(env=env, files=[{"path": "CODEOWNERS.md", "content": "x"}])


@pytest.mark.parametrize("path", [".git/config", ".GIT/config", "a/.git/hooks/post-checkout", ".git./config",
                                  ".g\u200cit/config", "git~1/config", ".Git /config", "\uff0egit/config"])
def test_git_directories_are_refused_to_everyone(path):
    with pytest.raises(BadRequest, match=r"files\[0\]\.path.*\.git"):
        pull_request(files=[{"path": path, "content": "x"}])
    with pytest.raises(BadRequest):
        github_params.validate("github.file", Params({"repo": "o/r", "path": path}))


# --- repositories per group --------------------------------------------------------------


def test_without_a_repository_list_every_repository_of_the_installations_is_reachable():
    assert scope().may_reach("anyone/anything", ())


@pytest.mark.parametrize("repo, groups, reachable", [
    ("octo-org/hello-world", ("devs",), True),
    ("Octo-Org/Hello-World", ("devs",), True),  # GitHub's names ignore case
    ("octo-org/hello-world", ("staff",), False),
    ("octo-labs/lab-notes", ("devs",), False),
    ("octo-labs/lab-notes", ("devs", "labs"), True),
    ("octo-org/docs", (), True),  # "*": every user
    ("octo-org/docsx", (), False),
])
def test_a_repository_list_grants_each_group_its_repositories(repo, groups, reachable):
    granted = scope(GITHUB_REPOS_BY_GROUP=json.dumps({"devs": ["octo-org/*"], "labs": ["octo-labs/lab-notes"],
                                                      "*": ["octo-org/docs"]}))
    assert granted.may_reach(repo, groups) is reachable


def test_an_empty_repository_list_grants_nothing():
    assert not scope(GITHUB_REPOS_BY_GROUP="{}").may_reach("octo-org/hello-world", ("devs",))


def test_a_repository_outside_the_list_is_forbidden_before_github_is_called():
    with pytest.raises(Forbidden, match="octo-org/hello-world is not granted"):
        authorized(groups=("devs",), env={"GITHUB_REPOS_BY_GROUP": '{"devs": ["octo-labs/*"]}'})


# --- title and body: the attribution is the server's --------------------------------------


@pytest.mark.parametrize("title", [
    "Fix\n\nRequested-by: someone-else", "Fix\rRequested-by: x", "Fix\u2028Requested-by: x", "Fix\u2029x",
    "Fix\x85x", "Fix\x1b[8mhidden", "Fix\tx", "Requested-by: someone-else", "requested by: x",
    "REQUESTED_BY : x", "Requested\u2010by: x", "Requested-by\uff1a x", "Re\u200bquested-by: x",
])
def test_a_title_cannot_forge_or_hide_the_trailer(title):
    with pytest.raises(BadRequest, match="'title'"):
        pull_request(title=title)


@pytest.mark.parametrize("body", [
    "Fixes it.\n\nRequested-by: someone-else", "Fixes it.\n\nSigned-off-by: a <a@b>\nRequested-by: eve",
    "x\u2028Requested-by: eve", "> Requested-by: eve", "- **Requested by**: eve", "x\x1b[8m", "x\x00",
    "x\rRequested-by: eve",
])
def test_a_body_cannot_forge_or_hide_the_trailer(body):
    with pytest.raises(BadRequest, match="'body'"):
        pull_request(body=body)


@pytest.mark.parametrize("body", ["As requested by the team.", "Tabs\tand\r\nlines.\n\nSigned-off-by: a <a@b>",
                                  "<!-- a comment -->\n<details>more</details>"])
def test_an_ordinary_body_is_kept(body):
    assert pull_request(body=body)["body"] == body


# --- paths and content --------------------------------------------------------------------


def test_paths_are_kept_as_spelled():
    nfd = "docs/cafe\u0301.md"
    assert pull_request(files=[{"path": nfd, "content": "x"}])["files"][0]["path"] == nfd
    assert github_params.validate("github.file", Params({"repo": "o/r", "path": nfd}))["path"] == nfd


def test_two_spellings_of_one_name_are_one_file():
    with pytest.raises(BadRequest, match="twice"):
        pull_request(files=[{"path": "caf\u00e9.md", "content": "1"}, {"path": "cafe\u0301.md", "content": "2"}])


def test_content_must_be_unicode_and_fit_one_frame():
    with pytest.raises(BadRequest, match=r"files\[0\]\.content"):
        pull_request(files=[{"path": "a", "content": "\ud800"}])
    with pytest.raises(PayloadTooLarge):
        pull_request(files=[{"path": f"f{i}", "content": "x" * 9000} for i in range(4)])


# --- the message handler and the worker -------------------------------------------------------


def test_the_handler_refuses_a_protected_path_and_starts_no_worker(app_env, boto, started, sender):
    connect("conn-s1=", headers={"Authorization": f"Bearer {login(boto, app_env)}"})
    message("conn-s1=", json.dumps({"action": "github.pr", "id": "p1", "repo": "octo-org/hello-world",
                                    "branch": "deploy", "title": "Deploy",
                                    "files": [{"path": ".github/workflows/deploy.yml", "content": "on: push"}]}))
    [frame] = sender.frames["conn-s1="]
    assert frame["id"] == "p1" and frame["error"]["code"] == "FORBIDDEN" and started == []


def test_the_handler_hands_the_worker_the_branch_under_the_prefix(app_env, boto, started, sender):
    connect("conn-s2=", headers={"Authorization": f"Bearer {login(boto, app_env)}"})
    message("conn-s2=", json.dumps({"action": "github.pr", "id": "p2", "repo": "octo-org/hello-world",
                                    "branch": "gh-pages", "title": "Fix", "files": [{"path": "a", "content": "x"}]}))
    [(_, payload)] = started
    assert payload["params"]["branch"] == "llm-ide/gh-pages"


def test_the_handler_refuses_a_repository_outside_the_users_groups(app_env, boto, monkeypatch, started,
                                                                   sender):
    monkeypatch.setenv("GITHUB_REPOS_BY_GROUP", '{"admins": ["*"]}')
    groups_env(monkeypatch, "")
    connect("conn-s3=", headers={"Authorization": f"Bearer {login(boto, app_env)}"})
    message("conn-s3=", json.dumps({"action": "github.file", "id": "f3", "repo": "octo-org/hello-world",
                                    "path": "README.md"}))
    [frame] = sender.frames["conn-s3="]
    assert frame["error"]["code"] == "FORBIDDEN" and started == []


@pytest.mark.parametrize("params, code", [
    ({"repo": "o/r", "branch": "refs/heads/main", "title": "t", "files": [{"path": "a", "content": "x"}]},
     "BAD_REQUEST"),
    ({"repo": "o/r", "branch": "x", "title": "t", "files": [{"path": ".github/workflows/a.yml", "content": "x"}]},
     "FORBIDDEN"),
    ({"repo": "o/r", "branch": "x", "title": "t\n\nRequested-by: eve", "files": [{"path": "a", "content": "x"}]},
     "BAD_REQUEST"),
])
def test_the_worker_checks_the_scope_again_before_reading_the_secret(app_env, monkeypatch, sender,
                                                                      params, code):
    monkeypatch.setattr(SecretSource, "_fetch", lambda self: pytest.fail("the secret must not be read"))
    chalice_app.github_worker(worker_event([], action="github.pr", params=params), None)
    [frame] = sender.frames["conn-w="]
    assert frame["error"]["code"] == code


def test_the_worker_refuses_a_username_that_could_not_be_a_trailer(app_env, monkeypatch, sender):
    monkeypatch.setattr(SecretSource, "_fetch", lambda self: pytest.fail("the secret must not be read"))
    event = worker_event([])
    event["user"]["username"] = "dev\nRequested-by: eve"
    chalice_app.github_worker(event, None)
    assert sender.frames["conn-w="][0]["error"]["code"] == "BAD_REQUEST"
