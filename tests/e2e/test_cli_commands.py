"""`llm-ide models`, `usage`, `sessions` and `context` against the local stack, as a person runs them."""
from __future__ import annotations

import json
import os
import pty
import re
import resource
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
    run.env = env  # type: ignore[attr-defined]  # for a test that starts the command itself
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


def test_sessions_show_prints_every_message_of_a_session_longer_than_a_frame(llm_ide, stack):
    session_id = llm_ide("sessions", "create", "--title", "long").stdout.strip()
    markers = [f"MARKER-{n}-{uuid.uuid4().hex[:6]}" for n in range(8)]
    with stack.connect("dev") as client:  # 8 exchanges of about 20 KB: more than one frame of session.get
        for marker in markers:
            frames = list(client.chat(marker + " " + "lorem ipsum " * 1700, sessionId=session_id, maxTokens=50))
            assert frames[-1]["type"] == "done", frames[-1]
        first_page = client.request("session.get", sessionId=session_id)["data"]
    assert first_page["cursor"] is not None  # the case this test is about
    shown = llm_ide("sessions", "show", session_id)
    assert shown.returncode == 0, shown.stderr
    assert all(shown.stdout.count(marker) >= 1 for marker in markers)
    assert shown.stdout.count("\n[user, ") == len(markers) and shown.stdout.count("\n[assistant, ") == len(markers)
    as_json = json.loads(llm_ide("sessions", "show", session_id, "--json").stdout)
    assert len(as_json["messages"]) == 2 * len(markers) and as_json["cursor"] is None


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


# --- a careless user: nothing ends in a traceback, each failure says what went wrong ----------------


def test_context_get_to_a_file_that_cannot_be_written_says_so(llm_ide, tmp_path):
    (tmp_path / "notes.md").write_text("kept\n")
    assert llm_ide("context", "put", str(tmp_path / "notes.md"), "--as", "cli-out/notes.md").returncode == 0
    for target in (tmp_path, tmp_path / "no-such-dir" / "notes.md"):  # a directory; a missing directory
        failed = llm_ide("context", "get", "cli-out/notes.md", "-o", str(target))
        assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
        assert f"error: cannot write {target}:" in failed.stderr


def test_output_piped_to_a_reader_that_went_away_ends_quietly(llm_ide, tmp_path):
    assert llm_ide("sessions", "create", "--title", "piped").returncode == 0
    for args in (("sessions", "list"), ("context", "list")):
        process = subprocess.Popen([LLM_IDE, *args], env=llm_ide.env, cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # as `| head -0` does: whatever the command writes meets a closed pipe
        stderr = process.stderr.read()
        assert process.wait(timeout=60) == 141, stderr  # 128 + SIGPIPE, as a shell tool stopped by it
        assert stderr == ""


def test_a_file_larger_than_memory_is_never_read_whole_and_is_refused_for_its_size(llm_ide, tmp_path):
    huge = tmp_path / "disk.img"
    with huge.open("wb") as handle:  # 2 GiB, sparse: nothing on disk
        handle.truncate(2 << 30)
    process = subprocess.run([LLM_IDE, "context", "put", str(huge)], check=False, env=llm_ide.env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)))
    assert process.returncode == 1 and "Traceback" not in process.stderr, process.stderr  # was a MemoryError
    assert "error: PAYLOAD_TOO_LARGE: context files are limited to" in process.stderr
    assert "disk.img" not in llm_ide("context", "list").stdout


def test_a_reply_with_terminal_escapes_is_shown_escaped_on_a_terminal_and_kept_in_a_file(llm_ide, tmp_path):
    # The local model echoes the prompt: a reply that sets the terminal's clipboard (OSC 52) and clears the screen.
    sequence = "\x1b]52;c;aGFja2Vk\x07\x9b2J"
    prompt = f"before {sequence} after"
    master, slave = pty.openpty()  # the command's standard output is a terminal
    process = subprocess.Popen([LLM_IDE, "chat", prompt], env=llm_ide.env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                               stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)  # the command holds its own copy
    screen = _read_all(master)
    assert process.wait(timeout=60) == 0
    assert "\x1b]52" not in screen and "\x9b" not in screen  # nothing the terminal would act on
    assert "before \\x1b]52;c;aGFja2Vk\\x07\\x9b2J after" in screen  # shown for what it is
    piped = llm_ide("chat", prompt)
    assert piped.returncode == 0 and f"before {sequence} after" in piped.stdout  # a file gets it byte for byte


def _read_all(master: int) -> str:
    """What was written to a pseudo-terminal, until its last writer closed it."""
    output = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every copy of the other end is closed
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    return output.decode("utf-8", errors="replace")


def test_messages_file_that_is_no_list_is_refused_before_anything_is_sent(llm_ide, tmp_path):
    (tmp_path / "conversation.json").write_text('{"role": "user", "content": "hi"}')
    refused = llm_ide("chat", "and then?", "--messages", str(tmp_path / "conversation.json"))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "must be a JSON list of messages" in refused.stderr


def test_a_url_that_is_no_websocket_server_is_said_so(llm_ide, stack):
    http_url = stack.endpoints.websocket_url.replace("ws://", "http://")
    wrong_scheme = llm_ide("--url", http_url, "sessions", "list")
    assert wrong_scheme.returncode == 2 and "Traceback" not in wrong_scheme.stderr, wrong_scheme.stderr
    assert f"{http_url} is not a WebSocket URL" in wrong_scheme.stderr
    with _server(lambda connection: connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")) as port:
        url = f"ws://127.0.0.1:{port}/local"
        assert llm_ide("--url", url, "login", "--username", "dev").returncode == 0  # a token for that URL
        garbage = llm_ide("--url", url, "sessions", "list")
    assert garbage.returncode == 1 and "Traceback" not in garbage.stderr, garbage.stderr
    assert "did not answer as a WebSocket server" in garbage.stderr


def test_a_connection_closed_or_silent_before_the_answer_ends_the_command_with_a_message(llm_ide, tmp_path):
    with _websocket_server(close_at_once=True) as url:
        assert llm_ide("--url", url, "login", "--username", "dev").returncode == 0  # a token for that URL
        closed = llm_ide("--url", url, "sessions", "list")
    assert closed.returncode == 1 and "Traceback" not in closed.stderr, closed.stderr
    assert "the connection closed before the backend answered session.list" in closed.stderr
    with _websocket_server(close_at_once=False) as url:  # never answers: the person presses Ctrl-C
        assert llm_ide("--url", url, "login", "--username", "dev").returncode == 0
        process = subprocess.Popen([LLM_IDE, "--url", url, "sessions", "list"], env=llm_ide.env, cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)  # connected, waiting for the answer
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip() == "interrupted"


def test_a_token_file_that_is_no_token_file_asks_for_a_new_login(llm_ide, stack, tmp_path):
    tokens = tmp_path / "home" / "tokens.json"
    for damaged in ('{"cut short', "[]", json.dumps({stack.endpoints.websocket_url: 5}),
                    json.dumps({stack.endpoints.websocket_url: {"current": "dev", "users": {"dev": {"x": 1}}}}),
                    json.dumps({stack.endpoints.websocket_url: {"current": ["dev"], "users": {}}})):
        tokens.write_text(damaged)
        listed = llm_ide("sessions", "list")
        assert listed.returncode == 1 and "Traceback" not in listed.stderr, listed.stderr
        assert "run `llm-ide login`" in listed.stderr
        assert llm_ide("logout").returncode in (0, 1) and "Traceback" not in llm_ide("logout").stderr
        tokens.write_text(damaged)
        assert llm_ide("login", "--username", "dev").returncode == 0  # a new sign-in replaces what was unreadable
        assert llm_ide("sessions", "list").returncode == 0


@contextmanager
def _server(answer: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP server on a free port that reads a request and answers it with `answer`."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(65536)
                answer(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@contextmanager
def _websocket_server(*, close_at_once: bool) -> Iterator[str]:
    """A WebSocket server that takes every connection and answers nothing: it closes it at once, or keeps it."""
    from websockets.sync.server import serve

    def handler(connection) -> None:
        if not close_at_once:
            for _ in connection:  # read, never answer, until the client goes
                pass

    with serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/local"
        finally:
            server.shutdown()
            thread.join(5)
