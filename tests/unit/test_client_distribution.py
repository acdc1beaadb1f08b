"""The client is its own distribution: its command, its pinned dependencies, nothing of the backend."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "client"
PROJECT = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
BACKEND_PACKAGES = {"chalicelib", "devserver", "infra", "tests", "app", "chalice", "jwt", "aws_xray_sdk", "moto"}
# The import name of each declared dependency (botocore comes with boto3, whose API it is).
IMPORTS = {"aiohttp": "aiohttp", "aiohttp_sse": "aiohttp-sse", "boto3": "boto3", "botocore": "boto3",
           "pycognito": "pycognito", "websockets": "websockets"}


def pins(text: str) -> dict[str, str]:
    return {m[1].lower(): m[2] for m in re.finditer(r"^([A-Za-z0-9_.\[\]-]+?)(?:\[[^\]]*\])?==([^\s#]+)", text, re.M)}


def imported_modules() -> set[str]:
    found = set()
    for path in CLIENT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_the_installed_distribution_has_the_llm_ide_command():
    distribution = metadata.distribution("llm-ide")
    (script,) = [e for e in distribution.entry_points if e.group == "console_scripts"]
    assert (script.name, script.value) == ("llm-ide", "client.cli:main")
    assert Path(sys.executable).with_name("llm-ide").exists()
    assert sorted(distribution.requires or []) == sorted(PROJECT["dependencies"])


def test_every_dependency_is_pinned_as_the_project_pins_it():
    declared = pins("\n".join(PROJECT["dependencies"]))
    assert len(declared) == len(PROJECT["dependencies"]), "every dependency is pinned with =="
    project = pins((ROOT / "requirements.txt").read_text() + (ROOT / "requirements-dev.txt").read_text())
    for name, version in declared.items():
        assert project.get(name, version) == version, f"{name}: the client pins {version}, the project {project[name]}"


def test_the_client_imports_nothing_of_the_backend_and_only_what_it_declares():
    imported = imported_modules()
    assert not imported & BACKEND_PACKAGES
    third_party = {name for name in imported - set(sys.stdlib_module_names) if name != "client"}
    declared = {re.split(r"[=<>\[]", d)[0].lower() for d in PROJECT["dependencies"]}
    assert {IMPORTS.get(name, name) for name in third_party} <= declared, third_party
