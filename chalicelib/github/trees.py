"""A commit's tree on GitHub, to look paths up as the repository spells them, however large it is.

One recursive listing (`GET /git/trees/{sha}?recursive=1`) usually holds every path, and
answers every look-up at no further cost. GitHub cuts that listing at 100,000 entries or
7 MB (`"truncated": true`); a path past the cut would be missing from it, and a pull
request would have lost a file's mode (an executable written back as a plain file) or
added a twin under another Unicode spelling. In a truncated tree a path is found level by
level instead (one non-recursive listing per directory on the way, each read once), and a
directory is listed from its own tree.
"""
from __future__ import annotations

from typing import Any

from chalicelib.github.client import GitHubClient
from chalicelib.github.paths import Spellings


class RepoTree:
    """The tree `sha` of `repo`, read with one recursive listing (more only when GitHub cut it)."""

    def __init__(self, github: GitHubClient, repo: str, sha: str) -> None:
        self._github, self._repo, self.sha = github, repo, sha
        listing = self._listing(sha, recursive=True)
        self.truncated = bool(listing.get("truncated"))
        self.items: list[dict[str, Any]] = listing.get("tree", [])  # as GitHub listed them: maybe not all
        self._by_path = {item["path"]: item for item in self.items}
        self._spellings = Spellings(self._by_path)
        self._levels: dict[str, dict[str, dict[str, Any]]] = {}  # tree sha -> {name: entry}, in a truncated tree

    def find(self, path: str, *, field: str = "path") -> tuple[str, dict[str, Any] | None]:
        """`path` as the repository spells it (each segment it holds in another normalisation form spelled
        its way, the rest as given) and its entry (with that `path`), or None when there is none.
        BAD_REQUEST when a segment matches several spellings (paths.Spellings)."""
        if not self.truncated:
            spelled = self._spellings.resolve(path, field=field)
            return spelled, self._by_path.get(spelled)
        parts = path.split("/")
        spelled_parts: list[str] = []
        sha = self.sha
        entry: dict[str, Any] | None = None
        for index, part in enumerate(parts):
            level = self._level(sha)
            name = Spellings(level).resolve(part, field=field)
            spelled_parts.append(name)
            entry = level.get(name)
            if entry is None or (index < len(parts) - 1 and entry["type"] != "tree"):
                return "/".join(spelled_parts + parts[index + 1:]), None
            sha = entry["sha"]
        spelled = "/".join(spelled_parts)
        return spelled, None if entry is None else {**entry, "path": spelled}

    def under(self, directory: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """Every entry under a directory entry of `find`, recursively, with full paths; and whether GitHub
        cut the listing."""
        prefix = directory["path"] + "/"
        if not self.truncated:
            return [item for item in self.items if item["path"].startswith(prefix)], False
        listing = self._listing(directory["sha"], recursive=True)
        entries = [{**item, "path": prefix + item["path"]} for item in listing.get("tree", [])]
        return entries, bool(listing.get("truncated"))

    def _level(self, sha: str) -> dict[str, dict[str, Any]]:
        if sha not in self._levels:
            self._levels[sha] = {item["path"]: item for item in self._listing(sha, recursive=False).get("tree", [])}
        return self._levels[sha]

    def _listing(self, sha: str, *, recursive: bool) -> dict[str, Any]:
        query = {"recursive": 1} if recursive else None
        listing = self._github.get(f"/repos/{self._repo}/git/trees/{sha}", query=query)
        return listing if isinstance(listing, dict) else {}
