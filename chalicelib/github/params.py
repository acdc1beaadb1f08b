"""Validation of the github.* actions' parameters, shared by the message handler and the worker.

Light on purpose (no PyJWT, no HTTP): the message handler imports it to refuse a
bad request before a worker is started; the worker validates again, since its
payload could come from anything that may invoke it. What a user may reach and
write (groups, repositories, the branch prefix, protected paths) is scope.py's.

Paths are kept as the client spelled them (not NFC-normalised as other paths of the
protocol are): GitHub's names are bytes, and the repository's own spelling wins
(paths.Spellings). The attribution trailer is the server's: a title is one line, and
neither title nor body may hold a line that reads as a `Requested-by:` trailer.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

from chalicelib.errors import BadRequest, PayloadTooLarge
from chalicelib.github.paths import canonical, names_git_dir
from chalicelib.protocol import MAX_FRAME_BYTES, Params, validate_path

ACTIONS = ("github.repos", "github.tree", "github.file", "github.pr")
MAX_PR_FILES = 100
MAX_TITLE = 256
MAX_BODY = 16 * 1024
# All of a pull request's content: what one frame can carry. Being JSON text, it is valid UTF-8
# too, so every file can go inline in the tree GitHub makes (no blob calls: see operations.py).
MAX_PR_CONTENT_BYTES = MAX_FRAME_BYTES
TRAILER_KEY = "Requested-by"

# GitHub's rules: an owner is 1-39 alphanumerics or single hyphens; a repository name
# is 1-100 of [A-Za-z0-9._-] and not "." or "..".
_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
_REPO_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
MAX_REF_BYTES = 255  # the longest ref name taken: a file name's limit on most filesystems, where git keeps refs
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_INVISIBLE = ("Cc", "Cf", "Zl", "Zp", "Zs")  # Unicode categories: controls, zero-width and bidi marks, separators
_COMMIT_SHA = re.compile(r"[0-9a-fA-F]{40}")  # a full SHA-1 commit id, which `ref` may be
_OBJECT_ID = re.compile(r"^(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{64})$")  # SHA-1 or SHA-256
# git's pseudo-refs and special names, which `git checkout NAME` or `git log NAME` would take
# for something other than the branch (compared in any case: refs live on case-folding filesystems too).
_SPECIAL_NAMES = frozenset({"head", "fetch_head", "orig_head", "merge_head", "cherry_pick_head", "revert_head",
                            "rebase_head", "bisect_head", "auto_merge", "merge_autostash", "stash"})
_REF_NAMESPACES = frozenset({"refs", "heads", "tags", "remotes"})  # `heads/x` resolves as `refs/heads/x`
# A line that reads as the trailer, in any case, with any punctuation or spaces around its words.
_TRAILER_LINE = re.compile(r"[\W_]*requested[\W_]*by[\W_]*:")


def validate_repo(value: str, *, field: str = "repo") -> str:
    owner, slash, name = value.partition("/")
    if not slash or not _OWNER.match(owner) or not _REPO_NAME.match(name) or name in (".", ".."):
        raise BadRequest(f"'{field}' must be 'owner/name' as GitHub spells it")
    return value


def validate_ref_name(value: str, *, field: str) -> str:
    """A branch (or tag) name by git's check-ref-format rules, or BAD_REQUEST saying which rule it breaks."""
    broken = _ref_name_problem(value)
    if broken:
        raise BadRequest(f"'{field}' is not a valid git branch name: {broken}")
    return value


def _ref_name_problem(value: str) -> str | None:
    """The first of git's check-ref-format rules (and our length limit, and ours on invisible characters)
    that `value` breaks, said for the user; None when it breaks none."""
    if not value:
        return "it is empty"
    size = len(value.encode("utf-8"))
    if size > MAX_REF_BYTES:
        return f"it is {size} bytes of UTF-8, longer than the {MAX_REF_BYTES} a ref name may take"
    forbidden = _REF_FORBIDDEN.search(value)
    if forbidden is not None:
        return f"it contains {_describe(forbidden[0])}; git refuses spaces, control characters and ~ ^ : ? * [ \\"
    invisible = next((ch for ch in value if unicodedata.category(ch) in _INVISIBLE), None)
    if invisible is not None:
        return (f"it contains {_describe(invisible)}, an invisible or separator character "
                "(a name that shows as another one)")
    for sequence in ("..", "@{", "//"):
        if sequence in value:
            return f"it contains {sequence!r}" + (" (an empty component)" if sequence == "//" else "")
    if value == "@":
        return "it is '@', which git reads as HEAD"
    if value.startswith(("-", "/")):
        return f"it starts with {value[0]!r}"
    if value.endswith(("/", ".")):
        return f"it ends with {value[-1]!r}"
    for part in value.split("/"):
        if part.startswith("."):
            return f"its component {part!r} starts with '.'"
        if part.endswith(".lock"):
            return f"its component {part!r} ends with '.lock'"
    return None


def _describe(ch: str) -> str:
    """A character as a message can show it: printable ones quoted, the others by their code point."""
    if ch == " ":
        return "a space"
    if ch.isprintable():
        return repr(ch)
    return f"U+{ord(ch):04X}"


def check_branch_name(value: str, *, field: str) -> str:
    """A name that git takes for a branch and nothing else: not a ref path (`refs/heads/x`, `heads/x`),
    not HEAD or another special name, no segment that is an object id (40 or 64 hex digits)."""
    validate_ref_name(value, field=field)
    parts = value.split("/")
    if parts[0].casefold() in _REF_NAMESPACES:
        raise BadRequest(f"'{field}' must be a branch name, not a ref path ({parts[0]}/...)")
    if any(part.casefold() in _SPECIAL_NAMES or part == "@" for part in parts):
        raise BadRequest(f"'{field}' must not be HEAD or another of git's special names")
    if any(_OBJECT_ID.match(part) for part in parts):
        raise BadRequest(f"'{field}' must not look like an object id (40 or 64 hexadecimal digits)")
    return value


def validate_github_path(value: str, *, field: str) -> str:
    """A repository path by the protocol's rules, never inside `.git` in any spelling; kept as given."""
    validate_path(value, field=field)
    if names_git_dir(value):
        raise BadRequest(f"'{field}' must not name a .git directory")
    return value


def claims_attribution(text: str) -> bool:
    """Whether a line of `text` reads as a `Requested-by:` trailer: compared with format characters
    dropped, compatibility forms and case folded, and split at every Unicode line boundary."""
    visible = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    skeleton = unicodedata.normalize("NFKC", visible).casefold()
    return any(_TRAILER_LINE.match(line) for line in skeleton.splitlines())


def _title(value: str) -> str:
    title = value.strip()
    if not title:
        raise BadRequest("'title' must not be blank")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in title):
        raise BadRequest("'title' must be one line, without control characters")
    if claims_attribution(title):
        raise BadRequest(f"'title' must not hold a {TRAILER_KEY}: trailer; the server adds it")
    return title


def _body(value: str) -> str:
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in value):
        raise BadRequest("'body' must not contain control characters other than tab and line breaks")
    if claims_attribution(value):
        raise BadRequest(f"'body' must not hold a {TRAILER_KEY}: line; the server adds the trailer")
    return value


def validate(action: str, params: Params) -> dict[str, Any]:
    """The action's parameters, checked and normalised, as the worker receives them."""
    if action == "github.repos":
        return {}
    repo = validate_repo(params.string("repo", required=True, max_length=140))
    if action in ("github.tree", "github.file"):
        ref = params.string("ref", max_length=MAX_REF_BYTES)
        if ref is not None and _COMMIT_SHA.fullmatch(ref):  # hexadecimal in either case, as git reads an object
            ref = ref.lower()  # id; GitHub's and operations.py's are lowercase
        checked: dict[str, Any] = {"repo": repo, "ref": None if ref is None else validate_ref_name(ref, field="ref")}
        path = params.string("path", required=action == "github.file")
        checked["path"] = None if path is None else validate_github_path(path, field="path")
        return checked
    if action == "github.pr":
        base = params.string("base", max_length=MAX_REF_BYTES)
        files = _files(params.list_of("files", max_items=MAX_PR_FILES, required=True))
        return {
            "repo": repo,
            # An existing branch (operations.py looks it up), never a commit, tag or other ref.
            "base": None if base is None else check_branch_name(base, field="base"),
            # As asked: scope.py puts it under the deployment's branch prefix.
            "branch": validate_ref_name(params.string("branch", required=True, max_length=MAX_REF_BYTES),
                                        field="branch"),
            "title": _title(params.string("title", required=True, max_length=MAX_TITLE)),
            "body": _body(params.string("body", max_length=MAX_BODY, allow_empty=True) or ""),
            "files": files,
        }
    raise BadRequest(f"unknown action {action[:64]!r}")


def _files(items: list[Any]) -> list[dict[str, str]]:
    if not items:
        raise BadRequest("'files' must hold at least one file")
    seen: set[str] = set()
    files = []
    size = 0
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest(f"'files[{index}]' must be an object with 'path' and 'content'")
        entry = Params(item, at=f"files[{index}]")
        path = validate_github_path(entry.string("path", required=True), field=f"files[{index}].path")
        content = entry.string("content", required=True, allow_empty=True)
        try:
            size += len(content.encode("utf-8"))
        except UnicodeEncodeError:
            raise BadRequest(f"'files[{index}].content' is not valid Unicode (it holds a lone surrogate)") from None
        if canonical(path) in seen:  # two spellings of one name would be one file on GitHub
            raise BadRequest(f"'files' names {path!r} twice")
        seen.add(canonical(path))
        files.append({"path": path, "content": content})
    if size > MAX_PR_CONTENT_BYTES:
        raise PayloadTooLarge(f"'files' hold {size} bytes of content; a pull request carries at most "
                              f"{MAX_PR_CONTENT_BYTES}")
    return files
