"""Validation of the github.* actions' parameters, shared by the message handler and the worker.

Light on purpose (no PyJWT, no HTTP): the message handler imports it to refuse a
bad request before a worker is started; the worker validates again, since its
payload could come from anything that may invoke it.
"""
from __future__ import annotations

import re
from typing import Any

from chalicelib.errors import BadRequest
from chalicelib.protocol import Params

ACTIONS = ("github.repos", "github.tree", "github.file", "github.pr")
MAX_PR_FILES = 100
MAX_TITLE = 256
MAX_BODY = 16 * 1024

# GitHub's rules: an owner is 1-39 alphanumerics or single hyphens; a repository name
# is 1-100 of [A-Za-z0-9._-] and not "." or "..".
_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
_REPO_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def validate_repo(value: str, *, field: str = "repo") -> str:
    owner, slash, name = value.partition("/")
    if not slash or not _OWNER.match(owner) or not _REPO_NAME.match(name) or name in (".", ".."):
        raise BadRequest(f"'{field}' must be 'owner/name' as GitHub spells it")
    return value


def validate_ref_name(value: str, *, field: str) -> str:
    """A branch (or tag) name by git's check-ref-format rules, or BAD_REQUEST."""
    problems = (
        len(value.encode("utf-8")) > 255,
        _REF_FORBIDDEN.search(value) is not None,
        ".." in value, "@{" in value, "//" in value, value == "@",
        value.startswith(("-", "/")), value.endswith(("/", ".")),
        any(part.startswith(".") or part.endswith(".lock") for part in value.split("/")),
    )
    if not value or any(problems):
        raise BadRequest(f"'{field}' is not a valid git branch name")
    return value


def validate(action: str, params: Params) -> dict[str, Any]:
    """The action's parameters, checked and normalised, as the worker receives them."""
    if action == "github.repos":
        return {}
    repo = validate_repo(params.string("repo", required=True, max_length=140))
    if action in ("github.tree", "github.file"):
        ref = params.string("ref", max_length=255)
        checked: dict[str, Any] = {"repo": repo, "ref": None if ref is None else validate_ref_name(ref, field="ref")}
        checked["path"] = params.path("path", required=action == "github.file")
        return checked
    if action == "github.pr":
        base = params.string("base", max_length=255)
        files = _files(params.list_of("files", max_items=MAX_PR_FILES, required=True))
        return {
            "repo": repo,
            "base": None if base is None else validate_ref_name(base, field="base"),
            "branch": validate_ref_name(params.string("branch", required=True, max_length=255), field="branch"),
            "title": params.string("title", required=True, max_length=MAX_TITLE).strip() or _blank("title"),
            "body": params.string("body", max_length=MAX_BODY, allow_empty=True) or "",
            "files": files,
        }
    raise BadRequest(f"unknown action {action[:64]!r}")


def _files(items: list[Any]) -> list[dict[str, str]]:
    if not items:
        raise BadRequest("'files' must hold at least one file")
    seen: set[str] = set()
    files = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest(f"'files[{index}]' must be an object with 'path' and 'content'")
        entry = Params(item)
        path = entry.path("path", required=True)
        content = entry.string("content", allow_empty=True)
        if content is None:
            raise BadRequest(f"'files[{index}].content' is required")
        if path in seen:
            raise BadRequest(f"'files' names {path!r} twice")
        seen.add(path)
        files.append({"path": path, "content": content})
    return files


def _blank(field: str) -> str:
    raise BadRequest(f"'{field}' must not be blank")
