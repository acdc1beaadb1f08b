"""Where the client finds the backend when nothing names it: the error says where it looked."""
from __future__ import annotations

import pytest

from client import cli
from client.endpoints import ENVIRONMENT


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """A directory without .dev/endpoints.json (not the clone `make dev` runs in), and no variables."""
    for variable in [*ENVIRONMENT.values(), "LLM_IDE_ENDPOINTS"]:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("LLM_IDE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("command", [["ping"], ["chat", "Hello"], ["serve"]])
def test_without_an_endpoints_file_the_error_names_the_file_it_looked_for(nowhere, capsys, command):
    assert cli.main(command) == 2
    error = capsys.readouterr().err
    assert str(nowhere / ".dev" / "endpoints.json") in error, error
    assert "LLM_IDE_ENDPOINTS" in error and "--url" in error, error


@pytest.mark.parametrize("command", [["ping"], ["serve"]])
def test_in_a_clone_whose_stack_stopped_the_error_asks_whether_make_dev_runs(nowhere, capsys, command):
    (nowhere / ".dev").mkdir()  # what a stack that ran here and stopped leaves: its state directory, no endpoints
    assert cli.main(command) == 2
    error = capsys.readouterr().err
    assert f"no {nowhere / '.dev' / 'endpoints.json'}: is `make dev` running?" in error, error
