"""docs/CONFIGURATION.md against the code: every environment variable read is documented, with
the default the code uses, and every variable documented is still read.

The app's settings are read by running chalicelib.config.load_settings with a recording
environment and reader (so a variable read through a helper, or with a default computed from
another, is seen as it runs); the local stack, the client and the deploy steps read os.environ
directly, so their reads are found in the source (`os.environ.get("X", default)`,
`os.environ.get("X") or default`, `os.environ["X"]`, `os.getenv`, and the local stack's
`read_number(os.environ, "X", default, ...)`), with the client's table of variables
(client.endpoints.ENVIRONMENT).
"""
from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib import config
from client.endpoints import ENVIRONMENT as CLIENT_ENVIRONMENT
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "CONFIGURATION.md").read_text()
SCANNED = ["app.py", "chalicelib", "devserver", "client", "infra"]
BASE = {"COGNITO_USER_POOL_ID": "eu-west-1_AbC123", "COGNITO_APP_CLIENT_IDS": "client1"}
# What the doc's defaults say in placeholders, as BASE makes them.
PLACEHOLDERS = {"<stage>": "dev", "<pool region>": "eu-west-1", "<pool id>": "eu-west-1_AbC123",
                "<issuer>": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"}
# The operating system's variables, read only to run a program (npm), not settings.
OPERATING_SYSTEM = {"PATH"}
# Defaults the doc gives as a rule over another variable, and the value the rule gives with BASE.
DERIVED = {"DEFAULT_MODEL_ID": config.DEFAULT_ALLOWED_MODELS.split(",")[0]}


def documented() -> dict[str, str]:
    """Each documented variable's default cell, from every table whose first column is `variable`."""
    rows: dict[str, str] = {}
    for table in re.findall(r"^\| variable \|.*\n\|[-| ]+\|\n((?:\|.*\n)+)", DOC, re.M):
        for row in table.splitlines():
            cells = [cell.strip() for cell in row.strip("|").split(" | ")]
            name = re.fullmatch(r"`([A-Z0-9_<>]+)`", cells[0])
            assert name, f"a row of a variable table names no variable: {row[:80]}"
            assert name.group(1) not in rows, f"{name.group(1)} is documented twice"
            rows[name.group(1)] = cells[1]
    return rows


DOCUMENTED = documented()


class RecordingEnvironment(dict):
    """An environment that remembers every name looked up in it."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


def app_settings_read(monkeypatch) -> tuple[set[str], dict[str, Any]]:
    """The variables load_settings reads, and the default it passes for each that has one."""
    defaults: dict[str, Any] = {}

    class RecordingReader(config._Reader):
        def text(self, name: str, default: str | None = None, **kwargs: Any) -> str:
            defaults.setdefault(name, default)
            return super().text(name, default, **kwargs)

        def number(self, name: str, default: Any, cast: Any, **kwargs: Any) -> Any:
            defaults.setdefault(name, default)
            return super().number(name, default, cast, **kwargs)

        def csv(self, name: str, default: str | None = None, **kwargs: Any) -> tuple[str, ...]:
            defaults.setdefault(name, default)
            return super().csv(name, default, **kwargs)

    monkeypatch.setattr(config, "_Reader", RecordingReader)
    environ = RecordingEnvironment(BASE)
    config.load_settings(environ)
    return environ.read, defaults


def python_files() -> Iterator[tuple[str, ast.Module]]:
    for entry in SCANNED:
        path = ROOT / entry
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            if "node_modules" not in file.parts and "cdk.out" not in file.parts:
                yield str(file.relative_to(ROOT)), ast.parse(file.read_text())


def _environ_read(node: ast.AST) -> str | None:
    """The variable's name when `node` reads one: os.environ.get("X"...), environ["X"], os.getenv("X"...),
    read_number(environ, "X", default, ...) (chalicelib.config's reader of one number)."""
    if isinstance(node, ast.Call) and _named(node.func) == "read_number" and len(node.args) > 2 \
            and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
        return node.args[1].value
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        func = node.func
        reads = (isinstance(func, ast.Attribute) and func.attr == "get" and _is_environ(func.value)) or \
            (isinstance(func, ast.Attribute) and func.attr == "getenv")
        if reads and isinstance(node.args[0].value, str):
            return node.args[0].value
    if isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.slice, ast.Constant) \
            and isinstance(node.ctx, ast.Load):
        return str(node.slice.value)
    return None


def _named(node: ast.AST) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "environ") or \
        (isinstance(node, ast.Attribute) and node.attr == "environ")


def _module(file: str) -> Any:
    return importlib.import_module(file.removesuffix(".py").replace("/", "."))


def _value(node: ast.AST, file: str) -> tuple[bool, Any]:
    """(True, the value) of a literal or of a module-level name; (False, None) for anything else."""
    if isinstance(node, ast.Constant):
        return True, node.value
    if isinstance(node, ast.Call) and _named(node.func) == "float" and len(node.args) == 1:  # float(NAME)
        known, value = _value(node.args[0], file)
        return known, float(value) if known else None
    if isinstance(node, ast.Name):
        value = getattr(_module(file), node.id, None)
        if isinstance(value, (int, float, str)):
            return True, value
    return False, None


def source_reads() -> dict[str, list[tuple[str, bool, Any]]]:
    """Each variable read directly from os.environ outside chalicelib/config.py: (file, has default, default)."""
    reads: dict[str, list[tuple[str, bool, Any]]] = {}
    for file, tree in python_files():
        if file == "chalicelib/config.py":
            continue
        # `os.environ.get("X") or default`: the default is the `or`'s right side.
        alternatives = {id(node.values[0]): node.values[1] for node in ast.walk(tree)
                        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or) and len(node.values) == 2}
        for node in ast.walk(tree):
            name = _environ_read(node)
            if name is None:
                continue
            known, default = False, None
            if isinstance(node, ast.Call) and _named(node.func) == "read_number":
                known, default = _value(node.args[2], file)
            elif isinstance(node, ast.Call) and len(node.args) > 1:
                known, default = _value(node.args[1], file)
            elif id(node) in alternatives:
                known, default = _value(alternatives[id(node)], file)
            reads.setdefault(name, []).append((file, known, default))
    for variable in CLIENT_ENVIRONMENT.values():
        reads.setdefault(variable, []).append(("client/endpoints.py", False, None))
    return reads


def literals(cell: str) -> list[str]:
    """The cell's `code` spans, placeholders filled in as BASE makes them."""
    found = []
    for literal in re.findall(r"`([^`]+)`", cell):
        for placeholder, value in PLACEHOLDERS.items():
            literal = literal.replace(placeholder, value)
        found.append(literal)
    return found


def documented_default(name: str) -> str | None:
    """The value the doc gives as the variable's default: its cell's first literal that is not another
    variable's name (`AWS_DEFAULT_REGION`, else `us-east-1`); None when the cell gives none (unset, prose)."""
    cell = DOCUMENTED[name]
    if re.match(r"(unset|empty|—|\(none\))", cell):
        return None
    values = [literal for literal in literals(cell) if literal not in DOCUMENTED]
    return values[0] if values else None


def same(code_default: Any, doc_default: str | None) -> bool:
    if code_default is None or code_default == "":
        return doc_default is None
    if doc_default is None:
        return False
    if isinstance(code_default, (int, float)) or re.fullmatch(r"-?\d+(\.\d+)?", str(code_default)):
        try:
            return float(doc_default) == float(code_default)
        except ValueError:
            return False
    return str(code_default) == doc_default


def test_every_variable_the_app_reads_is_documented_with_its_default(monkeypatch):
    read, defaults = app_settings_read(monkeypatch)
    missing = sorted(read - set(DOCUMENTED))
    assert not missing, f"read by chalicelib/config.py, not in docs/CONFIGURATION.md: {missing}"
    wrong = {name: (default, documented_default(name)) for name, default in defaults.items()
             if not same(DERIVED.get(name, default), documented_default(name) if name not in DERIVED
                         else DERIVED[name])}
    assert not wrong, f"(the code's default, the doc's) differ: {wrong}"
    assert defaults["DEFAULT_MODEL_ID"] == DERIVED["DEFAULT_MODEL_ID"]


def test_every_variable_the_stack_client_and_deploy_steps_read_is_documented_with_its_default():
    reads = source_reads()
    missing = sorted(name for name in reads if name not in DOCUMENTED and name not in OPERATING_SYSTEM)
    assert not missing, f"read by {[reads[name][0][0] for name in missing]}, not in docs/CONFIGURATION.md: {missing}"
    wrong = {}
    for name, places in reads.items():
        for file, known, default in places:
            if known and name in DOCUMENTED and not same(default, documented_default(name)):
                wrong[name] = (file, default, DOCUMENTED[name])
    assert not wrong, f"(where, the code's default, the doc's) differ: {wrong}"


def test_every_documented_variable_is_still_read(monkeypatch):
    read, _ = app_settings_read(monkeypatch)
    read |= set(source_reads())
    # botocore reads its own endpoint variables; the doc lists those the local stack sets.
    gone = sorted(name for name in DOCUMENTED
                  if name not in read and "<" not in name and not name.startswith("AWS_ENDPOINT_URL_"))
    assert not gone, f"documented in docs/CONFIGURATION.md but read nowhere: {gone}"


@pytest.mark.parametrize(("cell", "default"), [
    ("`5242880` (5 MiB)", "5242880"), ("`AWS_DEFAULT_REGION`, else `us-east-1`", "us-east-1"),
    ("unset (no daily money budget)", None), ("`llm-ide-<stage>-usage`", "llm-ide-dev-usage"),
])
def test_the_documented_default_is_the_cells_first_value(monkeypatch, cell, default):
    monkeypatch.setitem(DOCUMENTED, "X", cell)
    monkeypatch.setitem(DOCUMENTED, "AWS_DEFAULT_REGION", "unset")
    assert documented_default("X") == default


def test_every_directive_of_the_local_model_is_documented():
    from devserver import bedrock

    names = set(re.findall(r"(?<![\\\w])([a-z][a-z-]*)", bedrock._DIRECTIVE.pattern)) | {"tool"}
    assert {"throttle", "slow", "count-throttle"} <= names, names  # the pattern is read as intended
    undocumented = sorted(name for name in names if f"`[[{name}" not in DOC)
    assert not undocumented, f"directives of devserver/bedrock.py not in docs/CONFIGURATION.md: {undocumented}"
