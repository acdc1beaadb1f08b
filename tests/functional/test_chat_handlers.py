"""chat.send, chat.cancel and chat.resume through the Chalice message handler, against moto."""
from __future__ import annotations

import json

import boto3

from chalicelib.chat.input_bound import input_bound
from tests.handler_calls import connect, login, message

# What a chat.send of `prompt` alone reserves for input on the default model (Claude 3 Haiku, which Bedrock
# cannot count): the bound of its one message.
HI_BOUND = input_bound({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})


def table(app_env, boto, env_var):
    return boto3.resource("dynamodb", endpoint_url=boto("dynamodb").meta.endpoint_url, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local").Table(app_env.names[env_var])


def requests_table(app_env, boto):
    return table(app_env, boto, "REQUESTS_TABLE")


def user_sub(app_env, boto, connection_id):
    return table(app_env, boto, "CONNECTIONS_TABLE").get_item(Key={"connectionId": connection_id})["Item"]["userSub"]


def test_a_chat_whose_worker_cannot_start_is_an_internal_error_and_reserves_nothing(app_env, boto, sender, clock):
    # In these tests Lambda is moto, where no bedrock_worker exists: the invocation fails.
    token = login(boto, app_env)
    connect("conn-chat=", headers={"Authorization": f"Bearer {token}"})
    message("conn-chat=", json.dumps({"action": "chat.send", "id": "c1", "prompt": "hi"}))
    (error,) = sender.frames["conn-chat="]  # no ack: the worker posts it, and no worker ran
    assert error == {"type": "error", "id": "c1",
                     "error": {"code": "INTERNAL", "message": "could not start the worker"}}
    [record] = [item for item in requests_table(app_env, boto).scan()["Items"] if item.get("clientId") == "c1"
                and item.get("connectionId") == "conn-chat="]
    assert record["status"] == "error" and record["errorCode"] == "INTERNAL"
    message("conn-chat=", json.dumps({"action": "usage.get", "id": "u1"}))
    usage = sender.frames["conn-chat="][-1]["data"]
    assert usage["limits"]["tokens"]["remaining"] == usage["limits"]["tokens"]["limit"]  # released
    assert usage["usage"]["hour"]["requests"] == 2  # the chat was admitted once, by its reservation
    # It is no longer running, so it cannot be cancelled.
    message("conn-chat=", json.dumps({"action": "chat.cancel", "id": "c2", "requestId": "c1"}))
    assert sender.frames["conn-chat="][-1]["error"]["code"] == "NOT_FOUND"


def test_a_worker_that_took_the_chat_although_its_start_seemed_to_fail_owns_it(app_env, boto, sender, monkeypatch,
                                                                                   clock):
    """Issue 13 §7: the start raised after Lambda had queued the worker, and the worker claimed the chat first.
    The handler's queued -> error loses to the claim: it neither releases the reservation nor answers."""
    from chalicelib.aws.lambda_invoke import WorkerInvoker
    from chalicelib.chat.requests import RequestStore
    from chalicelib.errors import Internal

    store = RequestStore(requests_table(app_env, boto), ttl_seconds=600)

    def started_then_failed(self, name, payload):
        assert store.claim(payload["requestId"])  # the worker, already running
        raise Internal("could not start the worker")  # the answer lost on the way back

    monkeypatch.setattr(WorkerInvoker, "start", started_then_failed)
    token = login(boto, app_env)
    connect("conn-race=", headers={"Authorization": f"Bearer {token}"})
    message("conn-race=", json.dumps({"action": "chat.send", "id": "c1", "prompt": "hi"}))
    assert "conn-race=" not in sender.frames  # no error: the worker acks and streams the chat
    [record] = [item for item in requests_table(app_env, boto).scan()["Items"]
                if item.get("connectionId") == "conn-race=" and item.get("clientId") == "c1"]
    assert record["status"] == "streaming" and "errorCode" not in record
    message("conn-race=", json.dumps({"action": "usage.get", "id": "u1"}))
    tokens = sender.frames["conn-race="][-1]["data"]["limits"]["tokens"]
    assert tokens["limit"] - tokens["remaining"] >= 1 + 1024  # still reserved: the worker settles it


def test_a_refused_chat_counts_as_one_request_and_reserves_nothing(app_env, boto, sender, clock):
    token = login(boto, app_env)
    connect("conn-bad=", headers={"Authorization": f"Bearer {token}"})
    message("conn-bad=", json.dumps({"action": "usage.get", "id": "u0"}))
    message("conn-bad=", json.dumps({"action": "chat.send", "id": "c1", "prompt": "hi", "sessionId": "a" * 32}))
    message("conn-bad=", json.dumps({"action": "chat.send", "id": "c2", "prompt": "hi", "maxTokens": 0}))
    message("conn-bad=", json.dumps({"action": "usage.get", "id": "u1"}))
    before, missing, bad, after = sender.frames["conn-bad="]
    assert missing["error"]["code"] == "NOT_FOUND" and bad["error"]["code"] == "BAD_REQUEST"
    assert after["data"]["usage"]["hour"]["requests"] - before["data"]["usage"]["hour"]["requests"] == 3
    assert after["data"]["limits"]["tokens"] == before["data"]["limits"]["tokens"]


def test_cancel_by_either_id_and_only_by_the_owner(app_env, boto, sender):
    from chalicelib.chat.requests import RequestStore

    store = RequestStore(requests_table(app_env, boto), ttl_seconds=600)
    owner, other = login(boto, app_env, 0), login(boto, app_env, 1)
    connect("conn-a=", headers={"Authorization": f"Bearer {owner}"})
    connect("conn-b=", headers={"Authorization": f"Bearer {other}"})
    for server_id, client_id in (("a" * 32, "mine-1"), ("b" * 32, "mine-2")):
        store.create(request_id=server_id, kind="chat", user_sub=user_sub(app_env, boto, "conn-a="),
                     connection_id="conn-a=", client_id=client_id, model="m")
    for name in ("a" * 32, "mine-1", "bad id with spaces"):
        message("conn-b=", json.dumps({"action": "chat.cancel", "id": "x", "requestId": name}))
        code = sender.frames["conn-b="][-1]["error"]["code"]
        assert code == ("BAD_REQUEST" if " " in name else "NOT_FOUND")
    message("conn-a=", json.dumps({"action": "chat.cancel", "id": "y", "requestId": "mine-1"}))
    message("conn-a=", json.dumps({"action": "chat.cancel", "id": "z", "requestId": "b" * 32}))
    assert [f["data"] for f in sender.frames["conn-a="]] == [{"cancelled": True}, {"cancelled": True}]
    assert store.cancel_requested("a" * 32) and store.cancel_requested("b" * 32)


def test_a_request_is_claimed_by_one_worker_only_and_its_outcome_recorded(app_env, boto):
    from chalicelib.chat.requests import CANCELLED, CLAIMED, TAKEN, RequestStore, Usage

    store = RequestStore(requests_table(app_env, boto), ttl_seconds=600)
    store.create(request_id="c" * 32, kind="chat", user_sub="sub", connection_id="conn", client_id="x", model="m")
    assert store.claim("c" * 32) == CLAIMED
    assert store.claim("c" * 32) == TAKEN  # a retried invocation
    # A chat cancelled while queued: the worker owns it, but must not call the model.
    store.create(request_id="d" * 32, kind="chat", user_sub="sub", connection_id="conn", client_id="y", model="m")
    assert store.request_cancel(request_id="d" * 32, user_sub="sub")
    assert store.claim("d" * 32) == CANCELLED and store.claim("d" * 32) == TAKEN
    store.finish("c" * 32, status="done", stop_reason="end_turn", usage=Usage(3, 4))
    item = store.get("c" * 32)
    assert item is not None
    assert (item["status"], item["stopReason"], item["inputTokens"], item["outputTokens"]) == ("done", "end_turn", 3, 4)
    assert store.request_cancel(request_id="c" * 32, user_sub="sub") is False  # no longer running


def test_a_chat_whose_input_alone_is_over_the_budget_is_refused_and_counted(app_env, boto, sender, clock):
    from chalicelib.observability import metrics

    lines: list[str] = []
    metrics.set_output(lines.append)
    token = login(boto, app_env)
    connect("conn-big=", headers={"Authorization": f"Bearer {token}"})
    message("conn-big=", json.dumps({"action": "usage.get", "id": "u0"}))
    before = sender.frames["conn-big="].pop()["data"]
    # 7,500 tokens of context and 5,000 of prompt: more than the hour's 10,000 before any output.
    message("conn-big=", json.dumps({"action": "context.put", "id": "p1", "path": "big.txt", "content": "c" * 30_000}))
    message("conn-big=", json.dumps({"action": "chat.send", "id": "c1", "prompt": "p" * 20_000,
                                     "contextPaths": ["big.txt"]}))
    put, refused = sender.frames["conn-big="]
    assert put["type"] == "result"
    assert refused["type"] == "error" and refused["error"]["code"] == "BUDGET_EXCEEDED"
    assert refused["error"]["retryAfter"] >= 1
    metrics.set_output(None)
    emitted = [json.loads(line) for line in lines if "BudgetExceeded" in line]
    assert [(m["BudgetExceeded"], m["model"]) for m in emitted] == [(1, "anthropic.claude-3-haiku-20240307-v1:0")]
    # The refused chat counted as a request (with the context.put and this usage.get), and reserved nothing.
    message("conn-big=", json.dumps({"action": "usage.get", "id": "u"}))
    after = sender.frames["conn-big="][-1]["data"]
    assert after["usage"]["hour"]["requests"] - before["usage"]["hour"]["requests"] == 3
    assert after["limits"]["tokens"] == before["limits"]["tokens"]


def test_max_tokens_above_the_models_cap_is_lowered_before_the_ack(app_env, boto, sender, monkeypatch):
    from chalicelib.aws.lambda_invoke import WorkerInvoker
    from chalicelib.chat.job import ChatJob

    started = []
    monkeypatch.setattr(WorkerInvoker, "start", lambda self, name, payload: started.append(payload))
    token = login(boto, app_env)
    connect("conn-cap=", headers={"Authorization": f"Bearer {token}"})
    # Claude 3 Haiku (the default model) generates at most 4,096 tokens; 8,192 would fail upstream.
    message("conn-cap=", json.dumps({"action": "chat.send", "id": "m1", "prompt": "hi", "maxTokens": 8192}))
    # An Anthropic client's name for Claude 3.5 Sonnet (June 2024) is one of its aliases.
    message("conn-cap=", json.dumps({"action": "chat.send", "id": "m2", "prompt": "hi",
                                     "model": "claude-3-5-sonnet-20240620", "maxTokens": 100}))
    # The contract: any maxTokens above the model's maxOutputTokens is lowered to it, however far above.
    message("conn-cap=", json.dumps({"action": "chat.send", "id": "m3", "prompt": "hi", "maxTokens": 10**30}))
    assert "conn-cap=" not in sender.frames  # the workers post the acks, from what the jobs carry
    first, second, third = (ChatJob.from_event(event) for event in started)
    assert third.chat.max_tokens == 4096 and third.reservation.max_tokens == 4096
    assert first.reservation.max_tokens == 4096 and first.chat.max_tokens == 4096
    assert first.reservation.reserved == HI_BOUND + 4096  # the input's bound (no CountTokens here) + the cap
    assert second.chat.model == "anthropic.claude-3-5-sonnet-20240620-v1:0" and second.reservation.max_tokens == 100


def test_models_list_names_the_allowed_models_default_first(app_env, boto, sender):
    token = login(boto, app_env)
    connect("conn-models=", headers={"Authorization": f"Bearer {token}"})
    message("conn-models=", json.dumps({"action": "models.list", "id": "l1"}))
    (listed,) = sender.frames["conn-models="]
    models = listed["data"]["models"]
    assert [m["id"] for m in models] == ["anthropic.claude-3-haiku-20240307-v1:0",
                                         "anthropic.claude-3-5-sonnet-20240620-v1:0",
                                         "us.anthropic.claude-sonnet-4-20250514-v1:0"]  # the local stack's
    assert models[0]["default"] and models[0]["maxOutputTokens"] == 4096
    assert models[0]["supports"] == {"tools": True, "images": True, "promptCache": False}
