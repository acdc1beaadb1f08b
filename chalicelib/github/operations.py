"""The github.* actions, each a few GitHub REST calls, answering the protocol's `result` data.

A pull request costs the same few calls whatever its number of files: four or five reads
(the default branch when no base is given, base, the branch's absence, base's commit and
tree) and four writes, the fewest GitHub allows: one tree holding every file's content
inline (GitHub writes the blobs itself; a github.pr's content is UTF-8 text of at most
32 KiB, so it never needs a blob call of its own), one commit, the branch, the pull request.
GitHub's secondary rate limit counts such writes for the whole app (80 a minute). A base
too large for GitHub to list at once costs a read per directory on a file's path (trees.py).

Whatever fails once the branch was (or may have been) created is undone: unless GitHub
opened the pull request after all, the branch is deleted again if it still holds our
commit, in the time the client keeps back for it (GitHubClient.release_reserve), so that a
TIMEOUT or a throttle leaves nothing behind either; a failure before it leaves only
unreferenced objects, which no one sees and GitHub collects. If even the deletion fails,
the error says what remains.

Paths are used as GitHub has them (paths.Spellings): a name given in another Unicode
normalisation form than the repository's is read and updated under the repository's.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from chalicelib import protocol
from chalicelib.errors import AppError, BadRequest, Internal, NotFound, PayloadTooLarge, UpstreamError
from chalicelib.github.client import MAX_BLOB_TEXT, MAX_PAGES, GitHubClient, Unprocessable
from chalicelib.github.params import TRAILER_KEY
from chalicelib.github.trees import RepoTree

logger = logging.getLogger(__name__)

MAX_REPOS = MAX_PAGES * 100  # GitHub's largest page; 1000 repositories fit one frame
# The calls each action usually makes, held from the user's GitHub call budget before it runs; the
# worker settles to the calls it really made (retries, a file found under another spelling, a
# branch undone, the pages of several installations).
CALLS_RESERVED = {"github.repos": 1, "github.tree": 4, "github.file": 1, "github.pr": 9}
_ENTRY_TYPES = {"blob": "file", "tree": "dir", "commit": "submodule"}
_FILE_MODES = ("100644", "100755")
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # CommonMark: any ASCII punctuation may be escaped


class BranchTaken(BadRequest):
    """The pull request's branch holds a commit other than ours: nothing of it is ours to undo."""


@dataclass
class _PullRequestSent:
    """Whether GitHub may have opened the pull request unseen by us: a POST /pulls was sent (or was about
    to be) and neither its answer nor a look-up since said what it did."""
    unknown: bool = False


class GitHubOperations:
    def __init__(self, client: GitHubClient, *, max_file_bytes: int,
                 may_reach: Callable[[str], bool] = lambda repo: True) -> None:
        self._github = client
        self._max_file_bytes = max_file_bytes
        self._may_reach = may_reach  # repositories the user is granted (GitHubScope): github.repos lists only those

    def run(self, action: str, params: dict[str, Any], *, username: str) -> dict[str, Any]:
        if action == "github.repos":
            return self.repos()
        if action == "github.tree":
            return self.tree(params["repo"], ref=params.get("ref"), path=params.get("path"))
        if action == "github.file":
            return self.file(params["repo"], params["path"], ref=params.get("ref"))
        if action == "github.pr":
            return self.pull_request(params, username=username)
        raise BadRequest(f"unknown action {action[:64]!r}")

    def repos(self) -> dict[str, Any]:
        """The repositories of every installation the secret names, at most MAX_REPOS in all (one frame).

        An installation GitHub no longer knows (the account removed the app) is skipped and logged at ERROR;
        NotFound only when that is every installation."""
        listed: list[dict[str, Any]] = []
        truncated = False
        gone: NotFound | None = None
        answered = False
        for installation in self._github.installations():
            if len(listed) >= MAX_REPOS:
                truncated = True  # installations left unread
                break
            try:
                found, cut = self._github.paginate("/installation/repositories", key="repositories",
                                                   max_items=MAX_REPOS - len(listed), installation=installation)
            except NotFound as error:
                # The account removed the app, but the secret still names it: none of its repositories
                # can be reached, so the list is whole without them. The operator is to take the id out.
                logger.error("an installation the GitHub App secret names is gone; remove it from the secret",
                             extra={"installationId": installation})
                gone = error
                continue
            listed += found
            truncated = truncated or cut
            answered = True
        if gone is not None and not answered:
            raise gone  # every installation is gone: the app reaches nothing
        repos = [{"fullName": r["full_name"], "defaultBranch": r.get("default_branch"),
                  "private": bool(r.get("private"))} for r in listed if self._may_reach(r["full_name"])]
        return {"repos": repos, "truncated": truncated}

    def tree(self, repo: str, *, ref: str | None, path: str | None) -> dict[str, Any]:
        """Every entry under `path` (the whole repository without one), recursively."""
        commit = self._commit_sha(repo, ref)
        tree = RepoTree(self._github, repo, self._commit(repo, commit)["tree"]["sha"])
        if path:  # as the repository spells it; found level by level when GitHub cut the whole listing
            path, found = tree.find(path)
            if found is None:
                raise NotFound(f"no directory {path!r} in {repo} at {ref or 'the default branch'}")
            if found["type"] != "tree":
                kind = _entry_type(found)
                hint = "; read it with github.file" if kind == "file" else ""
                raise BadRequest(f"{path!r} is a {kind}, not a directory{hint}")
            items, truncated = tree.under(found)
        else:
            items, truncated = tree.items, tree.truncated
        entries: list[dict[str, Any]] = []
        size = 0
        for item in items:
            entry = {"path": item["path"], "type": _entry_type(item), "size": item.get("size")}
            size += len(json.dumps(entry)) + 1
            if size > protocol.INLINE_TEXT_BYTES:
                truncated = True
                break
            entries.append(entry)
        return {"entries": entries, "truncated": truncated, "commitSha": commit}

    def file(self, repo: str, path: str, *, ref: str | None) -> dict[str, Any]:
        missing = f"no file {path!r} in {repo} at {ref or 'the default branch'}"
        try:
            item = self._contents(repo, path, ref, missing)
        except NotFound:
            spelled = self._spelling(repo, path, ref)
            if spelled == path:
                raise
            path, item = spelled, self._contents(repo, spelled, ref, missing)
        if isinstance(item, list) or item.get("type") == "dir":
            raise BadRequest(f"{path!r} is a directory; list it with github.tree")
        if item.get("type") != "file":
            raise BadRequest(f"{path!r} is a {item.get('type')}, not a file")
        size = int(item.get("size") or 0)
        if size > self._max_file_bytes:
            raise PayloadTooLarge(f"{path!r} is {size} bytes; github.file serves at most {self._max_file_bytes}")
        if item.get("encoding") != "base64":
            raise UpstreamError("GitHub answered a file without its content")
        try:
            raw = base64.b64decode(item.get("content", ""))
        except (binascii.Error, ValueError):
            raise UpstreamError("GitHub answered a file whose content is not base64") from None
        if b"\x00" in raw:
            raise BadRequest(f"{path!r} is a binary file; github.file serves text (UTF-8) files only")
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"{path!r} is a binary file; github.file serves text (UTF-8) files only") from None
        return {"path": path, "content": content, "sha": item["sha"], "size": size}

    def pull_request(self, params: dict[str, Any], *, username: str) -> dict[str, Any]:
        """One commit holding every file, on a new branch from `base`, and a pull request into `base`."""
        repo, branch = params["repo"], params["branch"]
        base = params.get("base") or self._default_branch(repo)
        base_sha = self._branch_sha(repo, base)
        if self._branch_exists(repo, branch):
            raise BadRequest(f"the branch {branch!r} already exists in {repo}; choose a new name")
        base_tree = self._commit(repo, base_sha)["tree"]["sha"]
        # base's paths: their modes (a changed script keeps its executable bit) and spellings
        base_paths = RepoTree(self._github, repo, base_tree)
        entries = []
        for index, change in enumerate(params["files"]):
            field = f"files[{index}].path"
            path, found = base_paths.find(change["path"], field=field)
            _check_writable(base_paths, path, found, base=base, field=field)
            mode = found["mode"] if found is not None else "100644"
            entries.append({"path": path, "mode": mode, "type": "blob", "content": change["content"]})
        tree = self._github.post(f"/repos/{repo}/git/trees", {"base_tree": base_tree, "tree": entries},
                                 too_large=_too_large_for_github(entries))
        if tree["sha"] == base_tree:
            raise BadRequest(f"every file already has this content in {base}: there is nothing to commit")
        commit = self._github.post(f"/repos/{repo}/git/commits", {
            "message": f"{params['title']}\n\n{TRAILER_KEY}: {username}\n", "tree": tree["sha"],
            "parents": [base_sha]})
        # In Markdown nothing before the first line can hide it, as an unclosed comment could a last line.
        attribution = f"{TRAILER_KEY}: {_markdown_text(username)}"
        body = f"{attribution}\n\n{params['body']}" if params["body"].strip() else attribution
        pull = self._publish(repo, branch, commit["sha"], {"title": params["title"], "head": branch, "base": base,
                                                           "body": body})
        return {"number": pull["number"], "url": pull["html_url"], "branch": branch, "commitSha": commit["sha"]}

    def _publish(self, repo: str, branch: str, sha: str, pull_request: dict[str, Any]) -> dict[str, Any]:
        """The branch made at `sha` and the pull request opened from it; undone if that fails."""
        sent = _PullRequestSent()
        try:
            self._create_branch(repo, branch, sha)
            return self._open_pull(repo, pull_request, sent)
        except BranchTaken:
            raise
        except Exception as failure:
            return self._undo(failure, repo, branch, sha, pull_request["base"], look=sent.unknown)

    def _undo(self, failure: Exception, repo: str, branch: str, sha: str, base: str, *,
              look: bool) -> dict[str, Any]:
        """After `failure`, once the branch was or may have been made: the pull request GitHub opened
        anyway (looked for when `look`: a POST /pulls may have reached GitHub, unseen since), or
        `failure` raised again, saying whether the branch was deleted or what remains. Deleting the
        branch of an open pull request would close it."""
        self._github.release_reserve()
        try:
            found = self._open_pull_from(repo, branch, base) if look else None
            if found is not None:
                return found
            outcome = self._delete_branch(repo, branch, sha)
        except AppError as cleanup:
            logger.warning("GitHub branch left behind", extra={"repo": repo, "branch": branch, "commit": sha,
                                                               "reason": cleanup.code})
            note = (f"The branch {branch!r} with the commit {sha[:12]} may remain in {repo}: deleting it failed "
                    f"({cleanup.message}); delete it, or open the pull request from it on GitHub")
        else:
            note = {"deleted": f"Nothing was left in {repo}: the branch {branch!r} was deleted again",
                    "absent": f"Nothing was left in {repo}: the branch {branch!r} was not created",
                    "moved": f"The branch {branch!r} in {repo} holds another commit than {sha[:12]} now, so it "
                             "was left as it is"}[outcome]
        if not isinstance(failure, AppError) or isinstance(failure, Internal):
            logger.warning("pull request failed", extra={"repo": repo, "branch": branch, "cleanup": note})
            raise failure
        raise type(failure)(f"{failure.message}. {note}", retry_after=failure.retry_after) from None

    def _delete_branch(self, repo: str, branch: str, sha: str) -> str:
        """Delete the branch if it holds our commit: "deleted", "absent" (never made) or "moved" (left)."""
        name = quote(branch, safe="/")
        try:
            found = self._github.get(f"/repos/{repo}/git/ref/heads/{name}")
        except NotFound:
            return "absent"
        if found.get("object", {}).get("sha") != sha:
            return "moved"
        try:
            self._github.delete(f"/repos/{repo}/git/refs/heads/{name}")
        except Unprocessable:  # "Reference does not exist": a lost answer's retry, it is gone all the same
            return "deleted"
        return "deleted"

    # --- helpers --------------------------------------------------------------

    def _default_branch(self, repo: str) -> str:
        return self._github.get(f"/repos/{repo}", not_found=f"no repository {repo} (or no access to it)")[
            "default_branch"]

    def _branch_sha(self, repo: str, branch: str) -> str:
        """The commit a branch points at; NOT_FOUND for a name that is no branch (a tag, a commit)."""
        found = self._github.get(f"/repos/{repo}/git/ref/heads/{quote(branch, safe='/')}",
                                 not_found=f"no branch {branch!r} in {repo} (or no access to it)")
        return found["object"]["sha"]

    def _contents(self, repo: str, path: str, ref: str | None, missing: str) -> Any:
        return self._github.get(f"/repos/{repo}/contents/{quote(path, safe='/')}", query={"ref": ref},
                                not_found=missing,
                                too_large=f"{path!r} is too large for GitHub's API, which serves files of at most "
                                          f"{MAX_BLOB_TEXT}; github.file serves at most {self._max_file_bytes} bytes")

    def _spelling(self, repo: str, path: str, ref: str | None) -> str:
        """`path` as the repository spells it at `ref` (as given when it holds no other spelling)."""
        tree = self._commit(repo, self._commit_sha(repo, ref))["tree"]["sha"]
        return RepoTree(self._github, repo, tree).find(path)[0]

    def _commit_sha(self, repo: str, ref: str | None) -> str:
        """The commit a branch name (or a full commit sha) points at; no ref: the default branch."""
        ref = ref or self._default_branch(repo)
        if len(ref) == 40 and all(c in "0123456789abcdef" for c in ref):
            return ref
        return self._branch_sha(repo, ref)

    def _commit(self, repo: str, sha: str) -> dict[str, Any]:
        return self._github.get(f"/repos/{repo}/git/commits/{sha}", not_found=f"no commit {sha} in {repo}")

    def _branch_exists(self, repo: str, branch: str) -> bool:
        try:
            self._github.get(f"/repos/{repo}/git/ref/heads/{quote(branch, safe='/')}")
        except NotFound:
            return False
        return True

    def _open_pull(self, repo: str, request: dict[str, Any], sent: _PullRequestSent) -> dict[str, Any]:
        """POST /pulls, made safe to repeat: after a 5xx or a network failure GitHub may have opened
        it anyway, so look for an open pull request from the branch into base before trying again.
        `sent` tells the caller, whatever this raises, whether GitHub may have opened one unseen."""
        attempt = 0
        while True:
            attempt += 1
            sent.unknown = True  # from here on, whatever answers (or fails), GitHub may have opened it
            try:
                return self._github.post(f"/repos/{repo}/pulls", request, idempotent=False)
            except Unprocessable:
                if attempt == 1:
                    sent.unknown = False  # GitHub refused it: nothing was opened
                    raise
                found = self._look_for_pull(repo, request, sent)
                if found is None:  # not made by an earlier attempt of ours: GitHub's refusal stands
                    raise
                return found
            except UpstreamError as error:
                found = self._look_for_pull(repo, request, sent)
                if found is not None:
                    return found
                self._github.pause_before_retry(attempt, error)

    def _look_for_pull(self, repo: str, request: dict[str, Any], sent: _PullRequestSent) -> dict[str, Any] | None:
        """The pull request an earlier POST /pulls of ours opened, if any. The look-up only finds out what
        a call already sent did, so the call budget lets it pass: were it refused, the branch would be
        deleted, closing a pull request GitHub opened."""
        with self._github.finding_out():
            found = self._open_pull_from(repo, request["head"], request["base"])
        sent.unknown = False
        return found

    def _open_pull_from(self, repo: str, branch: str, base: str) -> dict[str, Any] | None:
        owner = repo.split("/", 1)[0]
        pulls = self._github.get(f"/repos/{repo}/pulls", query={"head": f"{owner}:{branch}", "base": base,
                                                                 "state": "open"})
        if not isinstance(pulls, list):
            raise UpstreamError("GitHub answered a list of pull requests that is not a list")
        return next((p for p in pulls if p.get("head", {}).get("ref") == branch), None)

    def _create_branch(self, repo: str, branch: str, sha: str) -> None:
        try:
            self._github.post(f"/repos/{repo}/git/refs", {"ref": f"refs/heads/{branch}", "sha": sha})
        except Unprocessable:
            # Created by a retry of this very call, or by someone else in the meantime.
            with self._github.finding_out():
                existing = self._github.get(f"/repos/{repo}/git/ref/heads/{quote(branch, safe='/')}")
            if existing.get("object", {}).get("sha") != sha:
                raise BranchTaken(f"the branch {branch!r} already exists in {repo}; choose a new name") from None


def _check_writable(base_paths: RepoTree, path: str, found: dict[str, Any] | None, *, base: str, field: str) -> None:
    """BAD_REQUEST unless `path` is a file in base (its mode is kept) or a new one in a directory: writing a
    symlink would replace it by a file (leaving what it points to as it was), a submodule would be lost, and
    a directory or a path under a file, symlink or submodule cannot be a file."""
    if found is not None and found["mode"] not in _FILE_MODES:
        kind = {"dir": "directory"}.get(_entry_type(found), _entry_type(found))
        hint = "; write the file it points to" if kind == "symlink" else ""
        raise BadRequest(f"'{field}' {path!r} is a {kind} in {base}; it cannot be written as a file{hint}")
    parts = path.split("/")
    for depth in range(1, len(parts)):
        above = base_paths.find("/".join(parts[:depth]), field=field)[1]
        if above is None:
            return  # a new directory: nothing below it exists
        if above["type"] != "tree":
            raise BadRequest(f"'{field}' {path!r} lies under {above['path']!r}, which is a {_entry_type(above)} "
                             f"in {base}, not a directory")


def _too_large_for_github(entries: list[dict[str, Any]]) -> str:
    """What GitHub's refusal of a pull request's tree as too large means: its largest file, which is
    over GitHub's limit on each file if any is (GitHub does not say which)."""
    sizes = [len(entry["content"].encode("utf-8")) for entry in entries]
    index = max(range(len(entries)), key=sizes.__getitem__)
    return (f"GitHub refused 'files[{index}]' {entries[index]['path']!r} ({sizes[index]} bytes) as too large: "
            f"its API takes files of at most {MAX_BLOB_TEXT}")


def _markdown_text(text: str) -> str:
    """`text` shown as it is in Markdown: each ASCII punctuation character backslash-escaped, so that
    a name cannot open a comment, a link or an HTML tag."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def _entry_type(item: dict[str, Any]) -> str:
    if item.get("mode") == "120000":
        return "symlink"
    return _ENTRY_TYPES.get(item.get("type", ""), item.get("type", "unknown"))
