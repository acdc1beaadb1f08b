"""What a user may reach and write on GitHub: the deployment's policy, checked before any GitHub call.

- GitHub at all: a user in GITHUB_ALLOWED_GROUPS (empty: every user).
- Repositories: with GITHUB_REPOS_BY_GROUP set, those its patterns grant the user's groups
  (and `"*"`, every user), compared as GitHub compares names, without regard to case; unset,
  every repository of the app's installations. Another repository is FORBIDDEN.
- Branches: a pull request's branch lives under GITHUB_BRANCH_PREFIX (`llm-ide/`): a name
  given without it gets it, and what follows the prefix must be a plain branch name
  (params.check_branch_name), so the app never writes to a branch a person or a workflow uses.
- Paths: a file within GITHUB_PROTECTED_PATHS (`.github/`: workflows run with the
  repository's secrets) is written only by GITHUB_PROTECTED_PATH_GROUPS, compared in every
  spelling a checkout would take for it (paths.comparable); `.git` never (params.py).

Light (no HTTP): the message handler checks it before starting a worker, and the worker
checks again, as it does the parameters.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.config import Settings
from chalicelib.errors import BadRequest, Forbidden
from chalicelib.github import params as github_params
from chalicelib.github.paths import is_within

EVERY_USER = "*"


@dataclass(frozen=True)
class GitHubScope:
    allowed_groups: tuple[str, ...]  # empty: every user
    repos_by_group: Mapping[str, tuple[str, ...]] | None  # None: every repository of the installations
    branch_prefix: str
    protected_paths: tuple[str, ...]
    protected_path_groups: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> GitHubScope:
        return cls(allowed_groups=settings.github_allowed_groups, repos_by_group=settings.github_repos_by_group,
                   branch_prefix=settings.github_branch_prefix, protected_paths=settings.github_protected_paths,
                   protected_path_groups=settings.github_protected_path_groups)

    def authorize(self, action: str, params: dict[str, Any], groups: Iterable[str]) -> dict[str, Any]:
        """The validated parameters as the request may use them (a pull request's branch under the
        prefix), or FORBIDDEN (GitHub, the repository or a protected path not granted) or BAD_REQUEST."""
        groups = tuple(groups)
        self.admit(groups)
        repo = params.get("repo")
        if repo is not None and not self.may_reach(repo, groups):
            raise Forbidden(f"the repository {repo} is not granted to this user's groups")
        if action != "github.pr":
            return params
        if not set(self.protected_path_groups).intersection(groups):
            for index, change in enumerate(params["files"]):
                entry = next((e for e in self.protected_paths if is_within(change["path"], e)), None)
                if entry is not None:
                    raise Forbidden(f"'files[{index}].path' is within the protected path {entry!r}, which this "
                                    "user's groups may not write")
        return {**params, "branch": self.branch(params["branch"])}

    def admit(self, groups: Iterable[str]) -> None:
        """FORBIDDEN unless a user in `groups` may use GitHub at all (GITHUB_ALLOWED_GROUPS)."""
        if self.allowed_groups and not set(self.allowed_groups).intersection(groups):
            raise Forbidden("GitHub access is not granted to this user")

    def may_reach(self, repo: str, groups: Iterable[str]) -> bool:
        """Whether GITHUB_REPOS_BY_GROUP grants `repo` (`owner/name`) to a user in `groups`."""
        if self.repos_by_group is None:
            return True
        owner, _, name = repo.casefold().partition("/")
        patterns = (p.casefold() for group in (EVERY_USER, *groups) for p in self.repos_by_group.get(group, ()))
        return any(p == "*" or p in (f"{owner}/*", f"{owner}/{name}") for p in patterns)

    def branch(self, requested: str) -> str:
        """The branch a pull request is made on: `requested` under the prefix (kept when it already
        starts with it, so a name the server answered can be given again)."""
        name = requested.removeprefix(self.branch_prefix)
        github_params.check_branch_name(name, field="branch")
        try:  # the name was valid alone: the prefix made it too long
            return github_params.validate_ref_name(self.branch_prefix + name, field="branch")
        except BadRequest as error:
            raise BadRequest(f"{error.message}, under the prefix {self.branch_prefix!r}") from None
