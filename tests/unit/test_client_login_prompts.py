"""`llm-ide login` with nobody to ask (a script, a pipe, `< /dev/null`): an error that says what to give, not a
traceback from `input()` or `getpass()`."""
from __future__ import annotations

import getpass
import io
import json

import pytest

from client import cli
from client.commands.account import NoAnswer, TerminalChallenges
from client.endpoints import ENVIRONMENT

# Without a terminal, Python warns that the password may be echoed: the very case these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore::getpass.GetPassWarning")

@pytest.fixture
def no_input(tmp_path, monkeypatch):
    """An endpoints file naming a user pool (and no password for anyone), and standard input at its end, read
    as Python reads a password without a terminal."""
    for variable in [*ENVIRONMENT.values(), "LLM_IDE_USERNAME", "LLM_IDE_PASSWORD"]:
        monkeypatch.delenv(variable, raising=False)
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps({
        "websocketUrl": "ws://127.0.0.1:9/local", "region": "us-east-1",
        "cognito": {"userPoolId": "us-east-1_abc", "clientId": "client1", "endpointUrl": "http://127.0.0.1:9"}}))
    monkeypatch.setenv("LLM_IDE_ENDPOINTS", str(endpoints))
    monkeypatch.setenv("LLM_IDE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    # What getpass does where there is no terminal (the fallback is not in typeshed).
    monkeypatch.setattr(getpass, "getpass", lambda prompt="Password: ": getpass.fallback_getpass(  # type: ignore[attr-defined]
        prompt, io.StringIO()))


@pytest.mark.parametrize("command, asked, hint", [
    (["login"], "'username'", "--username"),
    (["login", "--username", "alice"], "'password'", "LLM_IDE_PASSWORD"),
])
def test_login_without_input_names_what_it_asked_for_and_how_to_give_it(no_input, capsys, command, asked, hint):
    assert cli.main(command) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: sign-in asked for ") and asked in error and hint in error, error
    assert "Traceback" not in error


@pytest.mark.parametrize("ask", [lambda c: c.new_password("alice"), lambda c: c.mfa_code("alice", "SMS_MFA", 1)])
def test_a_challenge_without_input_is_no_answer(no_input, ask):
    with pytest.raises(NoAnswer):
        ask(TerminalChallenges())
