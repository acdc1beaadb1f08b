"""Paths in a GitHub repository: how two spellings of one name compare, and GitHub's own spelling.

Git stores a name as bytes, so `Café` written by macOS (NFD: `e` + U+0301) and by
Linux (NFC: `é`) are two different files to GitHub, though they look the same. A
path is therefore used as GitHub has it: `Spellings` finds, for a path given in
another normalisation form, the one the repository already holds.

Protection compares paths in a stricter form (`comparable`): the same for every
spelling a filesystem or a reader may take for the same name. A checkout on macOS
folds case and ignores zero-width and bidi marks, one on Windows drops trailing dots
and spaces and knows `GIT~1`, and compatibility forms (fullwidth letters) read the
same; git itself refuses every such spelling of `.git` in a tree, and so do we.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from chalicelib.errors import BadRequest

_GIT_DIR_NAMES = frozenset({".git", "git~1"})


def comparable(path: str) -> str:
    """`path` as it compares for protection: format characters (zero-width, bidi) dropped, compatibility
    forms and case folded, and each segment's trailing dots and spaces dropped."""
    visible = "".join(ch for ch in path if unicodedata.category(ch) != "Cf")
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", visible).casefold())
    return "/".join(part.rstrip(". ") for part in folded.split("/"))


def names_git_dir(path: str) -> bool:
    """Whether a segment of `path` is `.git` in any spelling a checkout would take for it."""
    return any(part in _GIT_DIR_NAMES for part in comparable(path).split("/"))


def is_within(path: str, entry: str) -> bool:
    """Whether `path` is `entry` (a file, or a directory with or without its trailing `/`) or lies under it,
    compared in the `comparable` form."""
    target = comparable(entry.removesuffix("/")).split("/")
    return comparable(path).split("/")[:len(target)] == target


def canonical(path: str) -> str:
    """The NFC form: two paths with the same canonical form are the same name to a reader."""
    return unicodedata.normalize("NFC", path)


class Spellings:
    """The paths of a tree, to find GitHub's spelling of a path given in another normalisation form."""

    def __init__(self, paths: Iterable[str]) -> None:
        self._paths = set(paths)
        self._by_canonical: dict[str, list[str]] = {}
        for path in self._paths:
            self._by_canonical.setdefault(canonical(path), []).append(path)

    def __contains__(self, path: str) -> bool:
        return path in self._paths

    def resolve(self, path: str, *, field: str = "path") -> str:
        """`path` with each leading segment the tree already holds in another form spelled as the tree
        has it (an exact match always wins); the rest, new, as given. Two other forms: BAD_REQUEST."""
        if path in self._paths:
            return path
        resolved: list[str] = []
        parts = path.split("/")
        for index, part in enumerate(parts):
            prefix = "/".join(resolved)
            candidate = f"{prefix}/{part}" if prefix else part
            if candidate not in self._paths:
                found = [p for p in self._by_canonical.get(canonical(candidate), [])
                         if not prefix or p.startswith(prefix + "/")]
                if len(found) > 1:
                    spellings = ", ".join(ascii(p) for p in sorted(found))
                    raise BadRequest(f"'{field}' matches several names that differ only in their Unicode form "
                                     f"({spellings}); give it as the repository spells it")
                if not found:
                    return "/".join(resolved + parts[index:])
                candidate = found[0]
            resolved.append(candidate.rsplit("/", 1)[-1])
        return "/".join(resolved)
