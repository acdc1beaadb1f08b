"""Pull requests and reads against the GitHub emulator, over HTTP: the calls a pull request costs,
what it leaves behind when it fails, the attribution it carries, and names as GitHub spells them."""
from __future__ import annotations

import json
import time
import unicodedata
import urllib.request
import uuid

import boto3
import pytest
from botocore.config import Config
from markdown_it import MarkdownIt

from chalicelib.config import load_settings
from chalicelib.errors import BadRequest, NotFound, PayloadTooLarge, Timeout, UpstreamError, UpstreamThrottled
from chalicelib.github import params as github_params
from chalicelib.github import worker
from chalicelib.github.client import GitHubClient
from chalicelib.github.credentials import AppJwt, InstallationTokens, RepoInstallations, SecretSource
from chalicelib.github.operations import CALLS_RESERVED, GitHubOperations
from chalicelib.limits.github_calls import CallHold
from chalicelib.protocol import Params
from chalicelib.transport import HttpTransport
from devserver.github import GitHubEmulator, new_app_key, secret_document
from devserver.github_repos import NFD_FILE, SEED_FILES
from tests.fakes import FakeMetrics, FakeSecrets, RecordingSender
from tests.functional.test_github_access import worker_event
from tests.functional.test_github_budget import BASE, budget, counter
from tests.servers import serve

REPO = "octo-org/hello-world"


@pytest.fixture(scope="module")
def keys():
    return new_app_key()


class GitHub:
    """A fresh emulator on a free port, and clients of it as the worker makes them."""

    def __init__(self, emulator: GitHubEmulator, url: str, private_key: str) -> None:
        self.emulator, self.url = emulator, url
        self._secrets = SecretSource(FakeSecrets(secret_document(private_key)), "arn:aws:secretsmanager:gh")
        self._tokens = InstallationTokens(clock=time.time)

    def client(self, *, deadline: float | None = None, reserve: float = 0.0, max_wait: float = 2.0,
               before_call=lambda calls_made, *, undoing: None) -> GitHubClient:
        time_left = (lambda: deadline - time.monotonic()) if deadline is not None else (lambda: float("inf"))
        return GitHubClient(transport=HttpTransport(connect_timeout=2, read_timeout=10), secrets=self._secrets,
                            app_jwt=AppJwt(clock=time.time), tokens=self._tokens, api_url=self.url, max_attempts=3,
                            max_wait=max_wait, jitter=lambda: 0.0, time_left=time_left, reserve=reserve,
                            before_call=before_call)

    def caches(self) -> worker.ContainerCaches:
        """What the worker's container keeps, with this emulator's secret."""
        return worker.ContainerCaches(transport=HttpTransport(connect_timeout=2, read_timeout=10),
                                      secrets=self._secrets, app_jwt=AppJwt(clock=time.time), tokens=self._tokens,
                                      routes=RepoInstallations(clock=time.time))

    def operations(self, client: GitHubClient | None = None) -> GitHubOperations:
        return GitHubOperations(client or self.client(), max_file_bytes=96 * 1024)

    def control(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(f"{self.url}/_emulator/{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    @property
    def repo(self):
        return self.emulator._repos[REPO]

    def writes(self) -> int:
        return self.emulator.stats["writes"]

    def file_at(self, ref: str, path: str) -> bytes:
        repo = self.repo
        entries = {e["path"]: e for e in repo.walk(repo.resolve_tree(ref))}
        return repo.objects[entries[path]["sha"]][1]


@pytest.fixture
def github(keys):
    private, public = keys
    emulator = GitHubEmulator(public_key_pem=public)
    with serve(emulator.make_app()) as url:
        yield GitHub(emulator, url, private)


def pr(branch: str, files: list[dict], **extra) -> dict:
    return {"repo": REPO, "base": "main", "branch": branch, "title": "Change", "body": "", "files": files, **extra}


# --- the calls a pull request costs -----------------------------------------------------


def test_a_100_file_pull_request_makes_four_writes_within_githubs_secondary_limit(github):
    files = [{"path": f"generated/file-{i:03}.txt", "content": f"line {i}\n"} for i in range(100)]
    done = github.operations().pull_request(pr("llm-ide/many", files), username="dev")
    assert github.writes() == 4  # the tree (with every file inline), the commit, the branch, the pull request
    assert github.repo.refs["heads/llm-ide/many"] == done["commitSha"]
    assert github.file_at("llm-ide/many", "generated/file-042.txt") == b"line 42\n"


def test_the_calls_are_the_same_for_one_file_and_for_a_hundred(github):
    counts = []
    github.operations().repos()  # the installation token, fetched once per container, is not the pull request's
    for n in (1, 100):
        client = github.client()
        github.operations(client).pull_request(
            pr(f"llm-ide/n{n}", [{"path": f"f{i}.txt", "content": str(i)} for i in range(n)]), username="dev")
        counts.append(client.calls)
    assert counts == [8, 8]  # base, no branch yet, base's commit and tree; four writes


def test_githubs_secondary_limit_refuses_the_fourth_write_and_its_undo_alike(github):
    github.control("write-limits", {"perMinute": 3})
    with pytest.raises(UpstreamThrottled) as refused:
        github.operations().pull_request(pr("llm-ide/limited", [{"path": "a.txt", "content": "a"}]), username="dev")
    assert refused.value.retry_after == 60 and github.writes() == 3
    assert "heads/llm-ide/limited" in github.repo.refs and "may remain" in refused.value.message


def test_files_that_change_nothing_are_refused_before_any_commit(github):
    readme = SEED_FILES["README.md"].decode()
    with pytest.raises(BadRequest, match="nothing to commit"):
        github.operations().pull_request(pr("llm-ide/same", [{"path": "README.md", "content": readme}]),
                                         username="dev")
    assert github.writes() == 1 and "heads/llm-ide/same" not in github.repo.refs


def test_base_must_be_a_branch(github):
    main = github.repo.refs["heads/main"]
    with pytest.raises(NotFound, match="no branch"):
        github.operations().pull_request({**pr("llm-ide/x", [{"path": "a", "content": "a"}]), "base": main},
                                         username="dev")
    assert github.writes() == 0


# --- nothing left behind --------------------------------------------------------------


@pytest.mark.parametrize("failure, error", [
    ({"status": 503, "count": 100}, UpstreamError),
    ({"status": 422, "count": 1}, BadRequest),
    ({"status": 403, "count": 1, "retryAfter": 600}, UpstreamThrottled),
])
def test_a_pull_request_that_cannot_be_opened_leaves_no_branch(github, failure, error):
    github.control("fault", {"method": "POST", "path": f"/repos/{REPO}/pulls", **failure})
    with pytest.raises(error) as failed:
        github.operations().pull_request(pr("llm-ide/failed", [{"path": "a.txt", "content": "a"}]), username="dev")
    assert f"Nothing was left in {REPO}: the branch 'llm-ide/failed' was deleted again" in failed.value.message
    assert "heads/llm-ide/failed" not in github.repo.refs and github.repo.pulls == []
    if error is UpstreamThrottled:
        assert failed.value.retry_after == 600


def test_a_pull_request_stopped_by_the_deadline_deletes_its_branch_in_the_time_kept_back(github):
    github.control("fault", {"method": "POST", "path": f"/repos/{REPO}/pulls", "status": 0, "delay": 2.5})
    client = github.client(deadline=time.monotonic() + 2, reserve=1)
    started = time.monotonic()
    with pytest.raises(Timeout) as failed:
        github.operations(client).pull_request(pr("llm-ide/slow", [{"path": "a.txt", "content": "a"}]),
                                               username="dev")
    assert time.monotonic() - started < 2.2  # the undo fit in the time kept back
    assert "the branch 'llm-ide/slow' was deleted again" in failed.value.message
    assert "heads/llm-ide/slow" not in github.repo.refs


def test_a_pull_request_github_opened_before_the_deadline_is_answered_not_undone(github):
    github.control("fault", {"method": "POST", "path": f"/repos/{REPO}/pulls", "status": 0, "delay": 2.5,
                             "after": True})  # made at once, answered too late
    client = github.client(deadline=time.monotonic() + 2, reserve=1)
    done = github.operations(client).pull_request(pr("llm-ide/late", [{"path": "a.txt", "content": "a"}]),
                                                  username="dev")
    [pull] = github.repo.pulls
    assert done["number"] == pull["number"] and github.repo.refs["heads/llm-ide/late"] == done["commitSha"]


def test_a_pull_request_github_opened_is_found_by_the_undo_when_looking_for_it_failed(github):
    """POST /pulls answered 502 after GitHub opened it, and the look-up failed too (three 503s): the pull
    request may be open, so the undo looks again before it deletes anything (the old code looked only after a
    TIMEOUT, and deleted the branch, which on GitHub closes the pull request)."""
    github.control("fault", {"method": "POST", "path": f"/repos/{REPO}/pulls", "status": 502, "after": True})
    github.control("fault", {"method": "GET", "path": f"/repos/{REPO}/pulls", "status": 503, "count": 3})
    done = github.operations().pull_request(pr("llm-ide/unseen", [{"path": "a.txt", "content": "a"}]),
                                            username="dev")
    [pull] = github.repo.pulls
    assert done["number"] == pull["number"] and github.repo.refs["heads/llm-ide/unseen"] == done["commitSha"]


def test_a_branch_whose_creation_answer_was_lost_is_deleted(github):
    github.control("fault", {"method": "POST", "path": f"/repos/{REPO}/git/refs", "status": 502, "count": 100,
                             "after": True})
    with pytest.raises(UpstreamError) as failed:
        github.operations().pull_request(pr("llm-ide/lost", [{"path": "a.txt", "content": "a"}]), username="dev")
    assert "deleted again" in failed.value.message and "heads/llm-ide/lost" not in github.repo.refs


def test_a_branch_never_created_is_said_so(github):
    github.control("fault", {"method": "POST", "path": f"/repos/{REPO}/git/refs", "status": 502, "count": 100})
    with pytest.raises(UpstreamError) as failed:
        github.operations().pull_request(pr("llm-ide/none", [{"path": "a.txt", "content": "a"}]), username="dev")
    assert "the branch 'llm-ide/none' was not created" in failed.value.message


def test_when_the_deletion_fails_too_the_error_names_what_remains(github):
    github.control("fault", {"method": "POST", "path": f"/repos/{REPO}/pulls", "status": 503, "count": 100})
    github.control("fault", {"method": "DELETE", "path": f"/repos/{REPO}/git/refs/heads/llm-ide/kept",
                             "status": 503, "count": 100})
    with pytest.raises(UpstreamError) as failed:
        github.operations().pull_request(pr("llm-ide/kept", [{"path": "a.txt", "content": "a"}]), username="dev")
    sha = github.repo.refs["heads/llm-ide/kept"]
    assert f"The branch 'llm-ide/kept' with the commit {sha[:12]} may remain in {REPO}" in failed.value.message



# --- the user's GitHub call budget -------------------------------------------------------


def test_a_pull_request_opened_despite_a_failed_answer_is_found_past_a_spent_call_budget(
        app_env, dynamodb, table_name, github, monkeypatch):
    """The run has made the 9 calls it holds when it sends POST /pulls; GitHub opens the pull request but
    answers 502. Looking for it is a 10th call, which the budget lets pass as an undo's: it only finds out
    what a call already sent did. The old code refused it (RATE_LIMITED) and deleted the branch, which on
    GitHub closes the pull request, telling the user that nothing was left."""
    github.control("fault", {"method": "POST", "path": f"/repos/{REPO}/pulls", "status": 502, "after": True})
    monkeypatch.setattr(worker, "container_caches", github.caches)
    settings = load_settings({**BASE, "GITHUB_CALLS_PER_HOUR": str(CALLS_RESERVED["github.pr"]),
                              "GITHUB_API_URL": github.url})
    calls, sender = budget(dynamodb, table_name, clock=time.time, GITHUB_CALLS_PER_HOUR=9), RecordingSender()
    event = worker_event([], action="github.pr", params=pr("llm-ide/lost-answer", [{"path": "a.txt", "content": "a"}]))
    event["user"]["sub"] = str(uuid.uuid4())  # an hour of its own
    worker.handle(event, settings=settings, sender_for=lambda endpoint: sender, budget=calls, metrics=FakeMetrics())
    [frame] = sender.frames["conn-w="]
    [pull] = github.repo.pulls
    assert frame["type"] == "result" and frame["data"]["number"] == pull["number"]
    assert github.repo.refs["heads/llm-ide/lost-answer"] == frame["data"]["commitSha"]
    # the installation token, base, the branch's absence, base's commit and tree, four writes; the look-up
    assert counter(dynamodb, table_name, event["user"]["sub"], time.time()) == 10


def test_an_undo_does_not_depend_on_the_call_budgets_table(dynamodb, table_name, github):
    """Past what the run holds, an undo's calls write nothing to DynamoDB before they are sent: with the table
    unreachable (or throttled) the branch is still deleted and the user told so. The old code held each of
    them first, and the table's error escaped the undo, leaving the branch without a word."""
    sub = str(uuid.uuid4())
    reservation = budget(dynamodb, table_name, clock=time.time, GITHUB_CALLS_PER_HOUR=9).reserve(
        sub, groups=(), calls=CALLS_RESERVED["github.pr"])
    unreachable = boto3.client("dynamodb", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                               aws_access_key_id="local", aws_secret_access_key="local",
                               config=Config(retries={"total_max_attempts": 1}, connect_timeout=1))
    hold = CallHold(budget(unreachable, table_name, clock=time.time, GITHUB_CALLS_PER_HOUR=9), reservation)
    github.control("fault", {"method": "POST", "path": f"/repos/{REPO}/pulls", "status": 422})
    client = github.client(before_call=hold.before_call)
    with pytest.raises(BadRequest) as failed:
        github.operations(client).pull_request(pr("llm-ide/undone", [{"path": "a.txt", "content": "a"}]),
                                               username="dev")
    assert f"Nothing was left in {REPO}: the branch 'llm-ide/undone' was deleted again" in failed.value.message
    assert "heads/llm-ide/undone" not in github.repo.refs and client.calls == 11  # 9 held, the undo's 2 not


# --- the attribution -------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    "Fixes the thing.\n\n<!-- an unclosed comment hides whatever follows it",
    "<details><summary>More</summary>\n\nan unclosed details element folds whatever follows it",
    "```\nan unclosed code fence turns whatever follows it into code",
])
def test_the_commit_ends_with_the_trailer_and_the_pull_request_shows_it_first(github, body):
    username = "dev_<b>x</b>[y](z)"  # Cognito allows punctuation in a username: none of it is Markdown here
    done = github.operations().pull_request(pr("llm-ide/attributed", [{"path": "a.txt", "content": "a"}],
                                               body=body), username=username)
    commit = github.repo.objects[done["commitSha"]][1]
    assert commit["message"] == f"Change\n\nRequested-by: {username}\n"  # git reads trailers in the last paragraph
    [pull] = github.repo.pulls
    first, *rest = MarkdownIt("commonmark").parse(pull["body"])
    inline = rest[0]
    assert (first.type, first.level, inline.type) == ("paragraph_open", 0, "inline") and inline.children
    assert [child.type for child in inline.children] == ["text"] and inline.children[0].content == \
        f"Requested-by: {username}"
    assert pull["body"].endswith(body)


# --- names as GitHub spells them --------------------------------------------------------

NFC_FILE = unicodedata.normalize("NFC", NFD_FILE)


def test_a_file_named_in_nfd_is_read_by_its_nfc_spelling_and_answered_with_githubs(github):
    assert NFC_FILE != NFD_FILE
    read = github.operations().file(REPO, NFC_FILE, ref=None)
    assert read["path"] == NFD_FILE and read["content"] == SEED_FILES[NFD_FILE].decode()
    assert github.operations().file(REPO, NFD_FILE, ref="main")["path"] == NFD_FILE  # as GitHub has it: one call


def test_a_directory_named_in_nfd_is_listed_by_its_nfc_spelling(github):
    directory = NFC_FILE.rsplit("/", 1)[0]
    listed = github.operations().tree(REPO, ref="main", path=directory)
    assert [e["path"] for e in listed["entries"]] == [NFD_FILE]


def test_a_missing_file_is_still_not_found(github):
    with pytest.raises(NotFound):
        github.operations().file(REPO, "docs/Résumés/missing.md", ref=None)


def test_updating_a_file_named_in_nfd_changes_it_and_adds_no_twin(github):
    new_file = unicodedata.normalize("NFC", "docs/Re\u0301sume\u0301s/the\u0301.md")
    github.operations().pull_request(pr("llm-ide/nfd", [{"path": NFC_FILE, "content": "changed\n"},
                                                        {"path": new_file, "content": "new\n"}]), username="dev")
    paths = [e["path"] for e in github.repo.walk(github.repo.resolve_tree("llm-ide/nfd")) if e["type"] == "blob"]
    in_directory = sorted(p for p in paths if p.startswith("docs/"))
    nfd_directory = NFD_FILE.rsplit("/", 1)[0]
    assert in_directory == sorted([NFD_FILE, f"{nfd_directory}/th\u00e9.md"])  # the new name as given
    assert github.file_at("llm-ide/nfd", NFD_FILE) == b"changed\n"


# --- a repository larger than GitHub lists at once ---------------------------------------------------
# GitHub cuts a recursive tree listing past 100,000 entries or 7 MB ("truncated": true); the emulator cuts
# it after 3 here, so that only README.md and assets/ are listed and docs/, src/ and zz/ lie past the cut.


def _past_the_cut(github) -> None:
    repo = github.repo
    files = {e["path"]: (e["mode"], e["sha"]) for e in repo.walk(repo.resolve_tree("main")) if e["type"] != "tree"}
    files["zz/run.sh"] = ("100755", repo.blob(b"#!/bin/sh\necho hi\n"))
    repo.refs["heads/scripts"] = repo.commit(repo.tree_from(files), [repo.refs["heads/main"]], "A script\n")
    github.control("tree-limit", {"maxEntries": 3})


def test_a_directory_past_githubs_cut_is_listed_whole_when_asked_for(github):
    _past_the_cut(github)
    whole = github.operations().tree(REPO, ref="scripts", path=None)
    assert whole["truncated"] is True and "src/app.py" not in [e["path"] for e in whole["entries"]]
    narrower = github.operations().tree(REPO, ref="scripts", path="src")  # as the docs say: ask narrower
    assert narrower["entries"] == [{"path": "src/app.py", "type": "file", "size": len(SEED_FILES["src/app.py"])}]
    assert narrower["truncated"] is False
    nfd = github.operations().tree(REPO, ref="scripts", path=NFC_FILE.rsplit("/", 1)[0])
    assert [e["path"] for e in nfd["entries"]] == [NFD_FILE]  # found under the repository's spelling
    with pytest.raises(NotFound):
        github.operations().tree(REPO, ref="scripts", path="src/missing")
    with pytest.raises(BadRequest, match="is a file, not a directory"):
        github.operations().tree(REPO, ref="scripts", path="zz/run.sh")


def test_a_file_past_githubs_cut_is_read_by_another_spelling(github):
    _past_the_cut(github)
    read = github.operations().file(REPO, NFC_FILE, ref="scripts")
    assert read["path"] == NFD_FILE and read["content"] == SEED_FILES[NFD_FILE].decode()


def test_a_pull_request_past_githubs_cut_keeps_modes_and_spellings(github):
    _past_the_cut(github)
    github.operations().pull_request(
        {**pr("llm-ide/cut", [{"path": "zz/run.sh", "content": "#!/bin/sh\necho bye\n"},
                              {"path": NFC_FILE, "content": "changed\n"}]), "base": "scripts"}, username="dev")
    made = {e["path"]: e for e in github.repo.walk(github.repo.resolve_tree("llm-ide/cut")) if e["type"] == "blob"}
    assert made["zz/run.sh"]["mode"] == "100755"  # still executable
    assert github.file_at("llm-ide/cut", NFD_FILE) == b"changed\n" and NFC_FILE not in made  # no twin


def test_a_commit_sha_in_capitals_is_the_same_commit(github):
    # As the worker serves a request: its parameters checked, then run.
    def run(action: str, **params) -> dict:
        return github.operations().run(action, github_params.validate(action, Params(params)), username="dev")
    commit = github.repo.refs["heads/main"]
    listed = run("github.tree", repo=REPO, ref=commit.upper(), path="src")
    assert listed["commitSha"] == commit and [e["path"] for e in listed["entries"]] == ["src/app.py"]
    assert run("github.file", repo=REPO, path="README.md", ref=commit.upper())["content"] == \
        SEED_FILES["README.md"].decode()


# --- what a pull request cannot write as a file ----------------------------------------------------


def _with_links(github) -> None:
    """A branch `links` of main plus a symlink to README.md and a submodule at vendor/lib."""
    repo = github.repo
    files = {e["path"]: (e["mode"], e["sha"]) for e in repo.walk(repo.resolve_tree("main")) if e["type"] != "tree"}
    files["link.md"] = ("120000", repo.blob(b"README.md"))
    files["vendor/lib"] = ("160000", repo.refs["heads/main"])  # a commit of another repository, as git keeps it
    repo.refs["heads/links"] = repo.commit(repo.tree_from(files), [repo.refs["heads/main"]], "Links\n")


@pytest.mark.parametrize("path, why", [
    ("link.md", "'link.md' is a symlink in links; it cannot be written as a file; write the file it points to"),
    ("vendor/lib", "'vendor/lib' is a submodule in links"),
    ("vendor/lib/x.c", "lies under 'vendor/lib', which is a submodule in links, not a directory"),
    ("README.md/x", "lies under 'README.md', which is a file in links, not a directory"),
    ("src", "'src' is a directory in links"),
])
def test_a_symlink_submodule_or_a_path_under_a_file_is_refused_and_nothing_is_written(github, path, why):
    # Written as a file, a symlink became a file (what it pointed to unchanged) and a submodule was lost.
    _with_links(github)
    with pytest.raises(BadRequest) as refused:
        github.operations().pull_request({**pr("llm-ide/links", [{"path": path, "content": "x\n"}]), "base": "links"},
                                         username="dev")
    assert why in refused.value.message and "files[0].path" in refused.value.message
    assert github.writes() == 0 and "heads/llm-ide/links" not in github.repo.refs


def test_a_symlink_and_a_submodule_are_listed_as_such(github):
    _with_links(github)
    listed = {e["path"]: e["type"] for e in github.operations().tree(REPO, ref="links", path=None)["entries"]}
    assert listed["link.md"] == "symlink" and listed["vendor/lib"] == "submodule"
    with pytest.raises(BadRequest, match="is a submodule, not a directory"):
        github.operations().tree(REPO, ref="links", path="vendor/lib")


# --- files larger than GitHub's API takes ---------------------------------------------------------
# GitHub refuses a file over 100 MB with a 403 whose `errors[].code` is `too_large`: it was FORBIDDEN, as
# if access had been refused. The emulator's limit is lowered here to stand for GitHub's.


def test_a_file_larger_than_github_serves_is_payload_too_large_naming_it(github):
    github.control("blob-limit", {"maxBytes": 16})
    with pytest.raises(PayloadTooLarge) as refused:
        github.operations().file(REPO, "README.md", ref=None)
    assert refused.value.message == ("'README.md' is too large for GitHub's API, which serves files of at most "
                                     "100 MB; github.file serves at most 98304 bytes")


def test_a_pull_request_file_larger_than_github_takes_is_payload_too_large_naming_it(github):
    github.control("blob-limit", {"maxBytes": 16})
    files = [{"path": "small.txt", "content": "small"}, {"path": "docs/big.txt", "content": "big " * 8}]
    with pytest.raises(PayloadTooLarge) as refused:
        github.operations().pull_request(pr("llm-ide/big", files), username="dev")
    assert refused.value.message == ("GitHub refused 'files[1]' 'docs/big.txt' (32 bytes) as too large: its API "
                                     "takes files of at most 100 MB")
    assert "heads/llm-ide/big" not in github.repo.refs and github.repo.pulls == []
