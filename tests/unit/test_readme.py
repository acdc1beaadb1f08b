"""README.md against the tree: its layout table and the `make` targets it names."""
from __future__ import annotations

import re

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def layout() -> dict[str, str]:
    """The layout table: folder (or file) -> what it holds."""
    table = re.search(r"^## Layout\n\n\| folder \| what it holds \|\n\|---\|---\|\n((?:\|.*\n)+)", README, re.M)
    assert table, "README.md has no layout table"
    rows = {}
    for row in table.group(1).splitlines():
        name, what = re.fullmatch(r"\| `([^`]+)` \| (.*) \|", row).groups()  # type: ignore[union-attr]
        assert name not in rows, f"{name} has two lines"
        rows[name] = what
    return rows


def ignored_folders() -> set[str]:
    """Top-level folders .gitignore keeps out of the repository (.venv/, build/, ...)."""
    lines = (ROOT / ".gitignore").read_text().splitlines()
    return {line.strip("/") for line in lines if re.fullmatch(r"[^#/*]+/", line)} | {".git"}


def test_the_layout_table_has_one_line_per_folder_of_the_repository():
    folders = {path.name + "/" for path in ROOT.iterdir()
               if path.is_dir() and path.name not in ignored_folders() and not path.name.endswith("_cache")}
    listed = {name for name in layout() if name.endswith("/")}
    assert listed == folders, f"not listed: {sorted(folders - listed)}; gone: {sorted(listed - folders)}"
    for name in layout():
        assert (ROOT / name).exists(), name


def test_the_chalicelib_line_names_every_module_and_package_of_the_kernel_and_features():
    what = layout()["chalicelib/"]
    named = set(re.findall(r"`([a-z_]+)/?`", what))
    present = {path.stem for path in (ROOT / "chalicelib").iterdir()
               if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()}
    assert present <= named, f"chalicelib/ holds, and README.md's layout does not name: {sorted(present - named)}"
    assert named <= present | {"$connect", "$default", "$disconnect"}, sorted(named - present)


def test_the_infra_line_names_every_command_of_infra():
    what = layout()["infra/"]
    commands = {path.stem for path in (ROOT / "infra").glob("*.py") if '__name__ == "__main__"' in path.read_text()}
    unnamed = sorted(command for command in commands if f"`{command}`" not in what)
    assert not unnamed, f"python -m infra.X commands README.md's layout does not name: {unnamed}"


def test_every_make_target_the_readme_names_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    named = set(re.findall(r"`make ([a-z][\w-]*)`", README)) | set(re.findall(r"^make ([a-z][\w-]*)", README, re.M))
    assert named, "README.md names no make target"
    assert named <= targets, f"named in README.md, not in the Makefile: {sorted(named - targets)}"
