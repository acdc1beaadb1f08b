"""The run's deadline, the repository list's page cap and a safe pull request creation,
with the fake clock and transport of tests/fakes.py."""
from __future__ import annotations

import logging

import pytest

from chalicelib.errors import BadRequest, Timeout, UpstreamError
from chalicelib.github import worker
from chalicelib.github.client import MAX_PAGES
from chalicelib.github.operations import GitHubOperations, _PullRequestSent
from chalicelib.transport import TransportError
from tests.fakes import GITHUB_API as API
from tests.fakes import T0, LambdaContext, reply

# --- the deadline ------------------------------------------------------------------


def test_no_call_starts_after_the_deadline_and_each_gets_the_time_left_as_its_timeout(world):
    client, transport = world(*[reply(201, {"sha": "b"})] * 5, deadline=T0 + 12)
    transport.latency = 5.0  # a slow GitHub: each call takes 5 s
    for _ in range(3):
        client.post("/repos/o/r/git/blobs", {"content": "x"})
    with pytest.raises(Timeout):
        client.post("/repos/o/r/git/blobs", {"content": "x"})
    assert len(transport.api_calls()) == 3 and transport.timeouts == [12.0, 7.0, 2.0]


def test_a_rate_limit_wait_that_would_pass_the_deadline_is_not_started(world):
    client, transport = world(reply(403, {"message": "secondary rate limit"}, retry_after="7"), reply(200, {}),
                              deadline=T0 + 5)
    with pytest.raises(Timeout) as error:
        client.get("/x")
    assert world.clock.slept == [] and error.value.retry_after == 7 and len(transport.api_calls()) == 1


def test_a_retry_backoff_that_would_pass_the_deadline_is_not_started(world):
    client, _transport = world(reply(502), reply(200, {}), deadline=T0 + 0.4)
    with pytest.raises(Timeout) as error:
        client.get("/x")
    assert world.clock.slept == [] and "HTTP 502" in error.value.message and error.value.retry_after is None


def test_a_wait_within_the_deadline_is_waited(world):
    client, _ = world(reply(403, {"message": "secondary rate limit"}, retry_after="3"), reply(200, {"ok": 1}),
                      deadline=T0 + 5)
    assert client.get("/x") == {"ok": 1} and world.clock.slept == [3.0]


def test_a_network_failure_cut_by_the_deadline_is_a_timeout(world):
    client, transport = world(TransportError("connection to GitHub timed out"), deadline=T0 + 2)
    transport.latency = 2.0  # the transport used all the time it was given
    with pytest.raises(Timeout):
        client.get("/x")
    assert transport.timeouts == [2.0]


def test_without_a_deadline_the_transport_keeps_its_own_timeouts(world):
    client, transport = world(reply(200, {}))
    client.get("/x")
    assert transport.timeouts == [None]


def test_the_time_left_is_lambdas_less_the_margin():
    context = LambdaContext(10_000)
    time_left = worker.time_left_from(context.get_remaining_time_in_millis)
    assert time_left() == (10_000 - worker.TIME_LIMIT_MARGIN_MS) / 1000
    context.remaining_ms = 2_000
    assert time_left() < 0
    assert worker.time_left_from(None)() == float("inf")


# --- the repository list's page cap ---------------------------------------------------


def test_repos_say_when_the_list_was_cut_at_the_page_limit(world, caplog):
    more = {"link": f'<{API}/installation/repositories?page=next>; rel="next"'}
    pages = [reply(200, {"repositories": [{"full_name": f"o/r{i}", "default_branch": "main"}]}, **more)
             for i in range(MAX_PAGES)]
    client, transport = world(*pages)
    with caplog.at_level(logging.WARNING, logger="chalicelib.github.client"):
        listed = GitHubOperations(client, max_file_bytes=1000).repos()
    assert listed["truncated"] is True and len(listed["repos"]) == MAX_PAGES
    assert len(transport.api_calls()) == MAX_PAGES
    assert any(r.getMessage() == "GitHub list cut at the page limit" for r in caplog.records)


def test_repos_are_not_truncated_when_the_last_page_was_read(world):
    client, _ = world(reply(200, {"repositories": [{"full_name": "o/r", "default_branch": "main", "private": True}]}))
    assert GitHubOperations(client, max_file_bytes=1000).repos() == {
        "repos": [{"fullName": "o/r", "defaultBranch": "main", "private": True}], "truncated": False}


# --- opening the pull request --------------------------------------------------------

REQUEST = {"title": "t", "head": "ide/x", "base": "main", "body": "b"}
PULL = {"number": 7, "html_url": "https://github.com/o/r/pull/7", "head": {"ref": "ide/x"}, "base": {"ref": "main"}}
OTHER = {"number": 3, "html_url": "https://github.com/o/r/pull/3", "head": {"ref": "ide/other"}}


def open_pull(client):
    return GitHubOperations(client, max_file_bytes=1000)._open_pull("o/r", dict(REQUEST), _PullRequestSent())


def methods(transport) -> list[str]:
    return [f"{method} {url.removeprefix(API)}" for method, url, _ in transport.api_calls()]


def test_a_pull_request_github_made_despite_a_server_error_is_found_not_made_twice(world):
    client, transport = world(reply(502), reply(200, [PULL]))
    assert open_pull(client)["number"] == 7
    assert methods(transport) == ["POST /repos/o/r/pulls",
                                  "GET /repos/o/r/pulls?head=o%3Aide%2Fx&base=main&state=open"]


def test_a_pull_request_github_did_not_make_is_tried_again_after_a_backoff(world):
    client, transport = world(TransportError("connection to GitHub failed"), reply(200, [OTHER]),
                              reply(201, PULL))
    assert open_pull(client)["number"] == 7
    assert [m.split("?")[0] for m in methods(transport)] == [
        "POST /repos/o/r/pulls", "GET /repos/o/r/pulls", "POST /repos/o/r/pulls"]
    assert world.clock.slept == [0.5]


def test_a_pull_request_that_appears_between_attempts_is_answered(world):
    exists = reply(422, {"message": "A pull request already exists for o:ide/x."})
    client, _ = world(reply(503), reply(200, []), exists, reply(200, [PULL]))
    assert open_pull(client)["number"] == 7


def test_a_refusal_of_the_first_attempt_stands(world):
    client, transport = world(reply(422, {"message": "No commits between main and ide/x"}))
    with pytest.raises(BadRequest, match="No commits"):
        open_pull(client)
    assert len(transport.api_calls()) == 1


def test_the_pull_request_attempts_are_bounded(world):
    client, transport = world(*[reply(502), reply(200, [])] * 3, max_attempts=3)
    with pytest.raises(UpstreamError):
        open_pull(client)
    assert len(transport.api_calls()) == 6 and world.clock.slept == [0.5, 1.0]


def test_the_pull_request_retries_stop_at_the_deadline(world):
    client, transport = world(reply(502), reply(200, []), reply(201, PULL), deadline=T0 + 0.3)
    with pytest.raises(Timeout):
        open_pull(client)
    assert len(transport.api_calls()) == 2 and world.clock.slept == []

