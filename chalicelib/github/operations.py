"""The github.* actions, each a few GitHub REST calls, answering the protocol's `result` data."""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import quote

from chalicelib import protocol
from chalicelib.errors import AppError, BadRequest, Internal, NotFound, PayloadTooLarge, Timeout, UpstreamError
from chalicelib.github.client import MAX_PAGES, GitHubClient, Unprocessable

MAX_REPOS = MAX_PAGES * 100  # GitHub's largest page; 1000 repositories fit one frame
_ENTRY_TYPES = {"blob": "file", "tree": "dir", "commit": "submodule"}
_FILE_MODES = ("100644", "100755")


class GitHubOperations:
    def __init__(self, client: GitHubClient, *, max_file_bytes: int) -> None:
        self._github = client
        self._max_file_bytes = max_file_bytes

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
        """The repositories of every installation the secret names, at most MAX_REPOS in all (one frame)."""
        listed: list[dict[str, Any]] = []
        truncated = False
        for installation in self._github.installations():
            if len(listed) >= MAX_REPOS:
                truncated = True  # installations left unread
                break
            found, cut = self._github.paginate("/installation/repositories", key="repositories",
                                               max_items=MAX_REPOS - len(listed), installation=installation)
            listed += found
            truncated = truncated or cut
        repos = [{"fullName": r["full_name"], "defaultBranch": r.get("default_branch"),
                  "private": bool(r.get("private"))} for r in listed]
        return {"repos": repos, "truncated": truncated}

    def tree(self, repo: str, *, ref: str | None, path: str | None) -> dict[str, Any]:
        """Every entry under `path` (the whole repository without one), recursively."""
        commit = self._commit_sha(repo, ref)
        tree_sha = self._commit(repo, commit)["tree"]["sha"]
        listing = self._github.get(f"/repos/{repo}/git/trees/{tree_sha}", query={"recursive": 1})
        prefix = f"{path}/" if path else ""
        entries: list[dict[str, Any]] = []
        size = 0
        truncated = bool(listing.get("truncated"))
        for item in listing.get("tree", []):
            if path and item["path"] == path and item["type"] != "tree":
                raise BadRequest(f"{path!r} is a file, not a directory; read it with github.file")
            if not item["path"].startswith(prefix):
                continue
            entry = {"path": item["path"], "type": _entry_type(item), "size": item.get("size")}
            size += len(json.dumps(entry)) + 1
            if size > protocol.INLINE_TEXT_BYTES:
                truncated = True
                break
            entries.append(entry)
        if path and not entries and not any(i["path"] == path for i in listing.get("tree", [])):
            raise NotFound(f"no directory {path!r} in {repo} at {ref or 'the default branch'}")
        return {"entries": entries, "truncated": truncated, "commitSha": commit}

    def file(self, repo: str, path: str, *, ref: str | None) -> dict[str, Any]:
        item = self._github.get(f"/repos/{repo}/contents/{quote(path, safe='/')}", query={"ref": ref},
                                not_found=f"no file {path!r} in {repo} at {ref or 'the default branch'}")
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
        base_sha = self._commit_sha(repo, base)
        if self._branch_exists(repo, branch):
            raise BadRequest(f"the branch {branch!r} already exists in {repo}; choose a new name")
        base_tree = self._commit(repo, base_sha)["tree"]["sha"]
        modes = self._file_modes(repo, base_tree)
        entries = []
        for change in params["files"]:
            if modes.get(change["path"]) == "040000":
                raise BadRequest(f"{change['path']!r} is a directory in {base}; it cannot be written as a file")
            blob = self._github.post(f"/repos/{repo}/git/blobs", {"content": change["content"], "encoding": "utf-8"})
            mode = modes.get(change["path"]) if modes.get(change["path"]) in _FILE_MODES else "100644"
            entries.append({"path": change["path"], "mode": mode, "type": "blob", "sha": blob["sha"]})
        tree = self._github.post(f"/repos/{repo}/git/trees", {"base_tree": base_tree, "tree": entries})
        trailer = f"Requested-by: {username}"
        commit = self._github.post(f"/repos/{repo}/git/commits", {
            "message": f"{params['title']}\n\n{trailer}\n", "tree": tree["sha"], "parents": [base_sha]})
        try:
            self._create_branch(repo, branch, commit["sha"])
        except (Timeout, UpstreamError) as error:  # GitHub may have made it before the answer was lost
            raise type(error)(f"{error.message}. The branch {branch!r} may have been created in {repo} with the "
                              f"commit {commit['sha'][:12]}; a new github.pr needs a new branch name",
                              retry_after=error.retry_after) from None
        body = f"{params['body'].rstrip()}\n\n{trailer}" if params["body"].strip() else trailer
        try:
            pull = self._open_pull(repo, {"title": params["title"], "head": branch, "base": base, "body": body})
        except AppError as error:
            if isinstance(error, Internal):
                raise
            # The branch stays (deleting it could fail just the same): say so, the user finishes on GitHub.
            raise type(error)(f"{error.message}. The branch {branch!r} was created in {repo} with the commit "
                              f"{commit['sha'][:12]}, but the pull request may not have been opened: look for it "
                              f"on GitHub, or open it from that branch; a new github.pr needs a new branch name",
                              retry_after=error.retry_after) from None
        return {"number": pull["number"], "url": pull["html_url"], "branch": branch, "commitSha": commit["sha"]}

    # --- helpers --------------------------------------------------------------

    def _default_branch(self, repo: str) -> str:
        return self._github.get(f"/repos/{repo}", not_found=f"no repository {repo} (or no access to it)")[
            "default_branch"]

    def _commit_sha(self, repo: str, ref: str | None) -> str:
        """The commit a branch name (or a full commit sha) points at; no ref: the default branch."""
        ref = ref or self._default_branch(repo)
        if len(ref) == 40 and all(c in "0123456789abcdef" for c in ref):
            return ref
        found = self._github.get(f"/repos/{repo}/git/ref/heads/{quote(ref, safe='/')}",
                                 not_found=f"no branch {ref!r} in {repo} (or no access to it)")
        return found["object"]["sha"]

    def _commit(self, repo: str, sha: str) -> dict[str, Any]:
        return self._github.get(f"/repos/{repo}/git/commits/{sha}", not_found=f"no commit {sha} in {repo}")

    def _branch_exists(self, repo: str, branch: str) -> bool:
        try:
            self._github.get(f"/repos/{repo}/git/ref/heads/{quote(branch, safe='/')}")
        except NotFound:
            return False
        return True

    def _file_modes(self, repo: str, tree_sha: str) -> dict[str, str]:
        """Modes of the base tree's entries, so a changed script keeps its executable bit."""
        listing = self._github.get(f"/repos/{repo}/git/trees/{tree_sha}", query={"recursive": 1})
        return {item["path"]: item["mode"] for item in listing.get("tree", [])}

    def _open_pull(self, repo: str, request: dict[str, Any]) -> dict[str, Any]:
        """POST /pulls, made safe to repeat: after a 5xx or a network failure GitHub may have opened
        it anyway, so look for an open pull request from the branch into base before trying again."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._github.post(f"/repos/{repo}/pulls", request, idempotent=False)
            except Unprocessable:
                found = self._open_pull_from(repo, request["head"], request["base"]) if attempt > 1 else None
                if found is None:  # not made by an earlier attempt of ours: GitHub's refusal stands
                    raise
                return found
            except UpstreamError as error:
                found = self._open_pull_from(repo, request["head"], request["base"])
                if found is not None:
                    return found
                self._github.pause_before_retry(attempt, error)

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
            existing = self._github.get(f"/repos/{repo}/git/ref/heads/{quote(branch, safe='/')}")
            if existing.get("object", {}).get("sha") != sha:
                raise BadRequest(f"the branch {branch!r} already exists in {repo}; choose a new name") from None


def _entry_type(item: dict[str, Any]) -> str:
    if item.get("mode") == "120000":
        return "symlink"
    return _ENTRY_TYPES.get(item.get("type", ""), item.get("type", "unknown"))
