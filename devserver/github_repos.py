"""The GitHub emulator's world: the app's installations and their git repositories, in memory.

Three installations, one account each: `2002` (octo-org, holding `octo-org/hello-world`;
the only one the local secret names by default), `3003` (octo-labs, `octo-labs/lab-notes`)
and `4004` (outside-corp, `outside-corp/private-plans`: for a deployment that names 2002
and 3003, an installation it must not touch). `hello-world` holds a directory and a file
whose names are in NFD (NFD_FILE), as a commit from macOS writes them.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

NFD_FILE = "docs/Re\u0301sume\u0301s/cafe\u0301.md"
SEED_FILES = {
    "README.md": b"# hello-world\n\nA repository of the local GitHub emulator.\n",
    "src/app.py": b'def main() -> None:\n    print("hello, world")\n\n\nif __name__ == "__main__":\n    main()\n',
    "assets/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00",
    # Committed from macOS: `Résumés` and `café` in NFD (`e` + U+0301), as its filesystem spells them.
    NFD_FILE: b"Notes written on a Mac.\n",
}
LAB_FILES = {
    "README.md": b"# lab-notes\n\nNotes of the octo-labs installation.\n",
    "notes/2026.md": b"- several installations, one app\n",
}
PRIVATE_FILES = {"README.md": b"# private-plans\n\nNo deployment names this installation.\n"}


@dataclass(frozen=True)
class Installation:
    id: int
    account: str
    repos: tuple[str, ...]  # full names


INSTALLATIONS = (
    Installation(2002, "octo-org", ("octo-org/hello-world",)),
    Installation(3003, "octo-labs", ("octo-labs/lab-notes",)),
    Installation(4004, "outside-corp", ("outside-corp/private-plans",)),
)
SEEDS = {"octo-org/hello-world": SEED_FILES, "octo-labs/lab-notes": LAB_FILES,
         "outside-corp/private-plans": PRIVATE_FILES}


@dataclass
class Repository:
    owner: str
    name: str
    default_branch: str = "main"
    private: bool = False
    objects: dict[str, tuple[str, Any]] = field(default_factory=dict)  # sha -> (type, data)
    refs: dict[str, str] = field(default_factory=dict)  # "heads/main" -> commit sha
    pulls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def put(self, kind: str, payload: bytes, data: Any) -> str:
        sha = hashlib.sha1(f"{kind} {len(payload)}\0".encode() + payload).hexdigest()
        self.objects[sha] = (kind, data)
        return sha

    def blob(self, content: bytes) -> str:
        return self.put("blob", content, content)

    def tree_from(self, files: dict[str, tuple[str, str]]) -> str:
        """A tree (and its subtrees) from {path: (mode, sha)} of its leaves."""
        children: dict[str, dict[str, tuple[str, str]]] = {}
        entries = []
        for path, (mode, sha) in files.items():
            head, slash, rest = path.partition("/")
            if slash:
                children.setdefault(head, {})[rest] = (mode, sha)
            else:
                entries.append({"name": head, "mode": mode, "type": "commit" if mode == "160000" else "blob",
                                "sha": sha})
        entries += [{"name": name, "mode": "040000", "type": "tree", "sha": self.tree_from(sub)}
                    for name, sub in children.items()]
        entries.sort(key=lambda e: e["name"] + ("/" if e["type"] == "tree" else ""))
        payload = b"".join(f"{e['mode'].lstrip('0')} {e['name']}".encode() + b"\0" + bytes.fromhex(e["sha"])
                           for e in entries)
        return self.put("tree", payload, entries)

    def commit(self, tree: str, parents: list[str], message: str) -> str:
        stamp = f"llm-ide-emulator <emulator@localhost> {int(time.time())} +0000"
        text = f"tree {tree}\n" + "".join(f"parent {p}\n" for p in parents) + \
            f"author {stamp}\ncommitter {stamp}\n\n{message}"
        return self.put("commit", text.encode(), {"tree": tree, "parents": parents, "message": message})

    def walk(self, tree: str, prefix: str = "") -> list[dict[str, Any]]:
        """Every entry under a tree, depth first, with full paths."""
        out = []
        for entry in self.objects[tree][1]:
            path = prefix + entry["name"]
            item = {"path": path, "mode": entry["mode"], "type": entry["type"], "sha": entry["sha"]}
            if entry["type"] == "blob":
                item["size"] = len(self.objects[entry["sha"]][1])
            out.append(item)
            if entry["type"] == "tree":
                out += self.walk(entry["sha"], path + "/")
        return out

    def resolve_tree(self, ref: str) -> str | None:
        """A tree from a tree sha, a commit sha or a branch name."""
        sha = self.refs.get(f"heads/{ref}", ref)
        kind, data = self.objects.get(sha, ("missing", {}))
        return sha if kind == "tree" else data["tree"] if kind == "commit" else None


def seed_repository(full_name: str, files: dict[str, bytes]) -> Repository:
    owner, name = full_name.split("/")
    repo = Repository(owner=owner, name=name)
    tree = repo.tree_from({path: ("100644", repo.blob(data)) for path, data in files.items()})
    repo.refs["heads/main"] = repo.commit(tree, [], "Initial commit\n")
    return repo


def seed_repositories() -> dict[str, Repository]:
    return {name: seed_repository(name, files) for name, files in SEEDS.items()}
