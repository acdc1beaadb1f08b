"""The walking skeleton, end to end: Cognito sign-in, connect, ping, bad input, two users."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError

from client import ConnectionRefused, IdeClient
from devserver.launcher import ROOT
from tests import tokens as test_tokens
from tests.e2e.conftest import LLM_IDE, start_stack, stop_stack


def connections_table(stack):
    return boto3.resource("dynamodb", endpoint_url=stack.document["awsEndpointUrl"], region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local").Table("llm-ide-local-connections")


def connection_items(stack):
    """The connections' items (the table also holds each user's list of open connections, `user#<sub>`)."""
    return [i for i in connections_table(stack).scan(ConsistentRead=True)["Items"]
            if not i["connectionId"].startswith("user#")]


def connection_ids(stack):
    return {i["connectionId"] for i in connection_items(stack)}


def items_for(stack, username):
    return [i for i in connection_items(stack) if i["username"] == username]


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_endpoints_file_is_as_designed(stack):
    doc = stack.document
    assert set(doc) == {"websocketUrl", "httpUrl", "region", "awsEndpointUrl", "cognito", "users"}
    assert doc["websocketUrl"].startswith("ws://127.0.0.1:") and doc["websocketUrl"].endswith("/local")
    assert doc["httpUrl"] == doc["websocketUrl"].replace("ws://", "http://").rsplit("/", 1)[0]
    assert set(doc["cognito"]) == {"userPoolId", "clientId", "endpointUrl"}
    assert [u["username"] for u in doc["users"]] == ["dev", "dev2"]
    assert "The local stack is ready." in stack.log_text()


def test_sign_in_connect_and_ping_with_header_and_query_token(stack):
    for token_in in ("header", "query"):
        with stack.connect(token_in=token_in) as client:
            assert client.ping() < 5


def test_health_route(stack):
    with urllib.request.urlopen(stack.document["httpUrl"] + "/health", timeout=5) as response:
        assert json.loads(response.read()) == {"status": "ok", "stage": "local"}


@pytest.mark.parametrize("token", [None, "", "garbage", "a.b.c", "forged"])
def test_bad_or_missing_token_is_refused_with_401_and_nothing_stored(stack, token):
    if token == "forged":  # well-formed and signed, but by a key that is not the pool's
        token = test_tokens.sign(test_tokens.claims(iss=f"https://cognito-idp.us-east-1.amazonaws.com/"
                                                        f"{stack.document['cognito']['userPoolId']}"))
    before = connection_ids(stack)
    for token_in in ("header", "query"):
        with pytest.raises(ConnectionRefused) as refused:
            IdeClient(stack.endpoints.websocket_url, token or None, token_in=token_in)
        assert refused.value.status == 401
    # No new record (an earlier test's connection may still be leaving: compare ids, not counts).
    assert connection_ids(stack) <= before


def test_40_kib_frame_is_payload_too_large_and_the_connection_stays_open(stack):
    with stack.connect() as client:
        client.send_raw(json.dumps({"action": "ping", "id": "huge", "pad": "x" * 40 * 1024}))
        frame = client.next_frame("huge")
        assert frame["type"] == "error" and frame["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert client.ping() < 5


def test_non_json_and_unknown_actions_are_bad_request(stack):
    with stack.connect() as client:
        client.send_raw("this is not json")
        frame = client.next_frame(None)
        assert frame["error"]["code"] == "BAD_REQUEST" and "id" not in frame
        frame = client.request("no.such.action")
        assert frame["type"] == "error" and frame["error"]["code"] == "BAD_REQUEST" and frame["id"].startswith("c")
        client.send_raw(json.dumps({"action": "ping"}))
        assert client.next_frame(None)["error"]["code"] == "BAD_REQUEST"
        client.send_raw(b"\x00\x01binary")
        assert client.next_frame(None)["error"]["code"] == "BAD_REQUEST"
        assert client.ping() < 5


def test_two_users_connections_are_told_apart(stack):
    with stack.connect("dev") as one, stack.connect("dev2") as two:
        one.ping(), two.ping()
        dev, dev2 = items_for(stack, "dev"), items_for(stack, "dev2")
        assert len(dev) >= 1 and len(dev2) >= 1
        assert {i["userSub"] for i in dev}.isdisjoint({i["userSub"] for i in dev2})
        # Each answer goes to its own connection only.
        one.send("ping", id="mine")
        assert one.next_frame("mine")["type"] == "pong"
        with pytest.raises(TimeoutError):
            two.next_frame("mine", timeout=0.5)


def test_disconnect_removes_the_connection(stack):
    before = {i["connectionId"] for i in items_for(stack, "dev2")}
    client = stack.connect("dev2")
    client.ping()
    # This connection's own item: a count would also drop when an earlier test's connection goes (its
    # $disconnect may still be under way), and miss a step when both go between two looks.
    [mine] = {i["connectionId"] for i in items_for(stack, "dev2")} - before
    client.close()
    assert wait_until(lambda: mine not in connection_ids(stack))


def test_management_api_answers_410_for_a_gone_connection(stack):
    api = boto3.client("apigatewaymanagementapi", endpoint_url=stack.endpoints.websocket_url.replace("ws://", "http://"),
                       region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local")
    with pytest.raises(ClientError) as gone:
        api.post_to_connection(ConnectionId="AAAAAAAAAAAAAA==", Data=b"{}")
    assert gone.value.response["Error"]["Code"] == "GoneException"
    with stack.connect() as client:
        client.ping()
        (item,) = [i for i in items_for(stack, "dev") if i["connectedAt"]][-1:]
        info = api.get_connection(ConnectionId=item["connectionId"])
        assert info["Identity"]["SourceIp"] == "127.0.0.1"


def test_cli_login_and_ping(stack, tmp_path):
    env = {**os.environ, "LLM_IDE_HOME": str(tmp_path), "LLM_IDE_ENDPOINTS": str(stack.endpoints_path)}
    login = subprocess.run([LLM_IDE, "login", "--username", "dev"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert login.returncode == 0, login.stderr
    assert "Signed in as dev" in login.stdout
    assert oct((tmp_path / "tokens.json").stat().st_mode & 0o777) == "0o600"
    ping = subprocess.run([LLM_IDE, "ping", "--count", "3"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert ping.returncode == 0, ping.stderr
    assert ping.stdout.count("pong in") == 3 and "median" in ping.stdout


def test_no_token_or_password_in_the_stack_output(stack):
    with stack.connect() as client:
        client.ping()
    output = stack.log_text()
    assert stack.tokens("dev").access_token not in output
    assert stack.tokens("dev").access_token.split(".")[2] not in output


def test_ctrl_c_stops_everything(tmp_path):
    second = start_stack(tmp_path)
    moto_url = second.document["awsEndpointUrl"]
    assert stop_stack(second.process) == 0
    assert not (tmp_path / "endpoints.json").exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(moto_url + "/moto-api/", timeout=2)
    with pytest.raises(OSError):
        urllib.request.urlopen(second.document["httpUrl"] + "/health", timeout=2)


@pytest.mark.parametrize("after", [0, 0.5, 1.5])
def test_ctrl_c_during_start_up_stops_it_cleanly(tmp_path, after):
    """Ctrl-C reaches the whole process group (moto too) at any point of the start-up: it stops, says so,
    leaves nothing running and no endpoints file, and prints no traceback."""
    process = subprocess.Popen([sys.executable, "-m", "devserver", "--port", "0", "--state-dir", str(tmp_path)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    assert wait_until((tmp_path / "moto.log").exists, timeout=30)  # moto is starting
    time.sleep(after)
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0 and "Traceback" not in output, output
    assert "interrupted during start-up" in output or "Stopping the local stack" in output, output
    assert not (tmp_path / "endpoints.json").exists()
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # nobody left in its process group (moto included)


CTRL_C_AT_THE_FORK = """
import os, signal, sys
from pathlib import Path
from devserver import aws

def interrupt(signum, frame):
    raise KeyboardInterrupt
signal.signal(signal.SIGINT, interrupt)  # as devserver.__main__ has it during start-up
# Ctrl-C lands while the parent runs its at-fork hooks (logging's among them), where Python
# "ignores" an exception: the KeyboardInterrupt must not be lost there.
os.register_at_fork(after_in_parent=lambda: os.kill(os.getpid(), signal.SIGINT))
moto = aws.MotoServer(listener=aws.listen(), log_path=Path(sys.argv[1]))
try:
    moto.start()
    print("started")
except KeyboardInterrupt:
    print("interrupted")
finally:
    moto.stop()
"""


def test_ctrl_c_while_moto_is_forked_interrupts_the_start_up(tmp_path):
    done = subprocess.run([sys.executable, "-c", CTRL_C_AT_THE_FORK, str(tmp_path / "moto.log")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "interrupted" and "Exception ignored" not in done.stderr, done.stdout + done.stderr


PORT_TAKEN_AT_THE_FORK = """
import os, socket, sys, urllib.request
from pathlib import Path
from devserver import aws

moto = aws.MotoServer(listener=aws.listen(), log_path=Path(sys.argv[1]))
taken = []

def take_the_port():
    # Another server (another stack's moto, say) binds moto's port while moto's child is starting, before
    # it could bind the port itself: the window of a port picked free, then bound seconds later.
    intruder = socket.socket()
    try:
        intruder.bind(("127.0.0.1", moto.port))
        intruder.listen()
        taken.append(intruder)
    except OSError:
        intruder.close()
os.register_at_fork(after_in_parent=take_the_port)
try:
    moto.start()
    with urllib.request.urlopen(moto.url + "/moto-api/", timeout=10) as answer:
        print("taken" if taken else "held", answer.status)
finally:
    moto.stop()
"""


def test_no_other_server_can_take_motos_port_while_it_starts(tmp_path):
    done = subprocess.run([sys.executable, "-c", PORT_TAKEN_AT_THE_FORK, str(tmp_path / "moto.log")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "held 200", done.stdout + done.stderr + (tmp_path / "moto.log").read_text()


def second_start(state_dir, port=0, env=None):
    """`make dev` run again while a stack is up (or with a bad setting): its exit code and what it printed."""
    done = subprocess.run([sys.executable, "-m", "devserver", "--port", str(port), "--state-dir", str(state_dir)],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})
    return done.returncode, done.stdout + done.stderr


def test_a_second_stack_on_the_same_state_dir_is_refused_and_the_first_keeps_its_endpoints(stack):
    before = stack.endpoints_path.read_text()
    code, output = second_start(stack.state_dir)
    assert code != 0
    assert f"another local stack is running from {stack.state_dir}" in output, output
    assert stack.document["websocketUrl"] in output  # which one, so the user can find it
    # The running stack is untouched: its endpoints file is where the client looks, unchanged.
    assert stack.endpoints_path.read_text() == before
    assert json.loads(urllib.request.urlopen(stack.document["httpUrl"] + "/health", timeout=5).read())["status"] == "ok"


def test_a_second_stack_on_a_taken_port_says_so_and_leaves_nothing(stack, tmp_path):
    port = stack.document["httpUrl"].rsplit(":", 1)[1]
    code, output = second_start(tmp_path, port=int(port))
    assert code != 0
    assert f"cannot listen on 127.0.0.1:{port}" in output and "set PORT to another port" in output, output
    assert not (tmp_path / "endpoints.json").exists()
    assert stack.endpoints_path.exists()


@pytest.mark.parametrize(("variable", "value"), [
    ("MOTO_PORT", "abc"), ("DEV_BEDROCK_PORT", "70000"), ("DEV_WS_IDLE_SECONDS", "soon"),
    ("DEV_WS_MAX_CONNECTION_SECONDS", "-5"), ("DEV_MODEL_TOKENS_PER_SECOND", "fast"),
    ("DEV_POST_LATENCY_MS", "nan"), ("DEV_LAMBDA_TIMEOUT_SECONDS", "0"), ("DEV_LAMBDA_EVENT_DELAY_MS", "1e9"),
    ("DEV_GITHUB_INSTALLATION_IDS", "2002,x"), ("DEV_GITHUB_INSTALLATION_IDS", "9"),
    ("DEV_GITHUB_INSTALLATION_IDS", "2002,2002"),
])
def test_a_bad_setting_of_the_stack_is_named_before_anything_starts(tmp_path, variable, value):
    code, output = second_start(tmp_path, env={variable: value})
    assert code != 0
    assert (f"{variable}={value!r}" in output or f"{variable}={value} is outside" in output) \
        and "Traceback" not in output, output
    assert not (tmp_path / "moto.log").exists()  # refused before moto started


def test_chalice_local_serves_the_rest_routes(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "chalice"), "local", "--port",
                                str(port), "--stage", "dev"], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def healthy():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    return json.loads(response.read())
            except OSError:
                return None
        assert wait_until(healthy, timeout=30)
        assert healthy() == {"status": "ok", "stage": "dev"}
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_web_client_is_served_with_its_config_and_no_passwords(stack):
    base = stack.document["httpUrl"]
    with urllib.request.urlopen(base + "/", timeout=5) as response:
        page = response.read().decode()
    assert "<title>llm-ide</title>" in page and 'src="app.js"' in page
    with urllib.request.urlopen(base + "/app.js", timeout=5) as response:
        assert "InitiateAuth" in response.read().decode()
    with urllib.request.urlopen(base + "/config.json", timeout=5) as response:
        config = json.loads(response.read())
    assert config["websocketUrl"] == stack.document["websocketUrl"]
    assert config["cognito"] == stack.document["cognito"]
    assert "users" not in config and stack.endpoints.dev_password("dev") not in json.dumps(config)


def test_the_web_clients_sign_in_request_works_against_the_stack(stack):
    # The same HTTP request web/app.js makes: Cognito's JSON API, cross-origin from the page.
    cognito = stack.document["cognito"]
    request = urllib.request.Request(
        cognito["endpointUrl"] + "/", method="POST",
        headers={"Content-Type": "application/x-amz-json-1.1", "Origin": stack.document["httpUrl"],
                 "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth"},
        data=json.dumps({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": cognito["clientId"],
                         "AuthParameters": {"USERNAME": "dev",
                                            "PASSWORD": stack.endpoints.dev_password("dev")}}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers.get("Access-Control-Allow-Origin") in ("*", stack.document["httpUrl"])
        token = json.loads(response.read())["AuthenticationResult"]["AccessToken"]
    with IdeClient(stack.endpoints.websocket_url, token, token_in="query") as client:
        assert client.ping() < 5
