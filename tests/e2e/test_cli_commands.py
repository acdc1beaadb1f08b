"""`llm-ide models`, `usage`, `sessions` and `context` against the local stack, as a person runs them."""
from __future__ import annotations

import json
import os
import re
import subprocess
import uuid

import pytest

from tests.e2e.conftest import LLM_IDE

pytestmark = pytest.mark.e2e
EPOCH = re.compile(r"\b1[6-9]\d{8}\b")  # a time shown as epoch seconds


@pytest.fixture
def llm_ide(stack, tmp_path):
    env = {**os.environ, "LLM_IDE_ENDPOINTS": str(stack.endpoints_path), "LLM_IDE_HOME": str(tmp_path / "home")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([LLM_IDE, *args], check=False, env=env, capture_output=True, text=True, timeout=60,
                              cwd=tmp_path)
    assert run("login", "--username", "dev").returncode == 0
    return run


def test_usage_shows_limits_and_use_in_local_time(llm_ide):
    shown = llm_ide("usage")
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"Requests\s+[\d,]+ of [\d,]+ requests a minute left, renewed 20\d\d-", shown.stdout)
    assert "This hour" in shown.stdout and "Today" in shown.stdout and not EPOCH.search(shown.stdout)
    report = json.loads(llm_ide("usage", "--json").stdout)
    assert set(report) == {"limits", "usage"}


def test_models_lists_the_callers_models(stack, llm_ide):
    shown = llm_ide("models", "--json")
    assert shown.returncode == 0, shown.stderr  # models.list is protocol v1.1
    listed = json.loads(shown.stdout)
    table = llm_ide("models").stdout
    assert all(model["id"] in table for model in listed) and " *" in table


def test_sessions_create_list_show_delete(llm_ide):
    title = f"cli {uuid.uuid4().hex[:6]}"
    session_id = llm_ide("sessions", "create", "--title", title).stdout.strip()
    assert llm_ide("chat", "remember this", "--session", session_id).returncode == 0
    listed = llm_ide("sessions", "list")
    assert session_id in listed.stdout and title in listed.stdout and not EPOCH.search(listed.stdout)
    shown = llm_ide("sessions", "show", session_id)
    assert shown.returncode == 0 and title in shown.stdout
    assert "[user, 20" in shown.stdout and "[assistant, 20" in shown.stdout and shown.stdout.count("remember this") == 2
    assert llm_ide("sessions", "delete", session_id).returncode == 0
    gone = llm_ide("sessions", "show", session_id)
    assert gone.returncode == 1 and "NOT_FOUND" in gone.stderr


def test_context_put_list_get_delete_small_large_and_binary(llm_ide, tmp_path):
    folder = f"cli-{uuid.uuid4().hex[:6]}"
    small, large, binary = tmp_path / "small.md", tmp_path / "large.txt", tmp_path / "blob.bin"
    small.write_text("# Notes\nça va ✓\n")
    large.write_text("".join(f"line {n} of a large file\n" for n in range(12_000)))  # ~290 KB: a presigned PUT
    binary.write_bytes(bytes(range(256)) * 100)
    for local in (small, large, binary):
        put = llm_ide("context", "put", str(local), "--as", f"{folder}/{local.name}")
        assert put.returncode == 0, put.stderr
        assert f"{local.name}  " in put.stderr and "100%" in put.stderr  # the progress line
    listed = llm_ide("context", "list", f"{folder}/")
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == [
        f"{folder}/blob.bin", f"{folder}/large.txt", f"{folder}/small.md"]
    assert f"{large.stat().st_size:,}" in listed.stdout and not EPOCH.search(listed.stdout)
    assert llm_ide("context", "get", f"{folder}/small.md").stdout == small.read_text()
    for local in (large, binary):
        copy = tmp_path / f"copy-{local.name}"
        assert llm_ide("context", "get", f"{folder}/{local.name}", "-o", str(copy)).returncode == 0
        assert copy.read_bytes() == local.read_bytes()
    assert llm_ide("context", "delete", f"{folder}/small.md").returncode == 0
    missing = llm_ide("context", "get", f"{folder}/small.md")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    unreadable = llm_ide("context", "put", str(tmp_path / "no-such-file"))
    assert unreadable.returncode == 1 and "cannot read" in unreadable.stderr
