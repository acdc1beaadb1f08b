"""Fixtures for tests that call the Chalice handlers directly (no local gateway), against moto."""
from __future__ import annotations

import io
import itertools
import json
import logging
import os
import shutil
import sys

import boto3
import pytest
from botocore.config import Config

from chalicelib import process
from chalicelib.aws.lambda_invoke import WorkerInvoker
from chalicelib.observability import metrics
from chalicelib.observability.invocation import invocation
from chalicelib.root import Root, get_clock
from tests.conftest import reset_app_caches
from tests.fakes import PAST_DAY, Clock, RecordingSender

_days = itertools.count()  # each test with the `clock` fixture gets a day of its own


@pytest.fixture
def sender(monkeypatch, app_env):
    recording = RecordingSender()
    monkeypatch.setattr(Root, "sender", lambda self, endpoint: recording)
    return recording


@pytest.fixture
def table(app_env, boto):
    name = app_env.names["CONNECTIONS_TABLE"]
    return boto3.resource("dynamodb", endpoint_url=boto("dynamodb").meta.endpoint_url, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local").Table(name)


@pytest.fixture
def clock(app_env) -> Clock:
    """The app's clock (every root's: chalicelib.root.get_clock), standing still 10 s into a day no
    other test uses, so its minute, hour and day windows start empty and never roll over mid-test.
    Installed after app_env's reset, before the test builds a root; set `clock.now` to move the
    app's time; app_env's reset() at the end gives the app back the real clock."""
    fixed = Clock(PAST_DAY + 86400 * next(_days) + 10)
    process.install(get_clock, lambda: fixed.now)
    return fixed


@pytest.fixture(scope="module")
def dynamodb(moto_url):
    # A pool as large as the crowd, so the threads really hit moto at once.
    return boto3.client("dynamodb", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local", config=Config(max_pool_connections=200,
                                                                     retries={"mode": "standard"}))


@pytest.fixture(scope="module")
def table_name(provisioned):
    return provisioned.names["USAGE_TABLE"]


@pytest.fixture
def started(monkeypatch):
    """The worker invocations the message handler asked for."""
    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(WorkerInvoker, "start", lambda self, name, payload: calls.append((name, payload)))
    return calls


@pytest.fixture
def logs(app_env, monkeypatch):
    """The app's JSON log lines and EMF lines, each parsed (tests of what on-call sees)."""
    monkeypatch.setenv("LOG_FORMAT", "json")
    reset_app_caches()
    stream = io.StringIO()
    with invocation("test"):  # installs the app's handler
        pass
    handler = next(h for h in logging.getLogger("chalicelib").handlers
                   if isinstance(h, logging.StreamHandler) and getattr(h, "llm_ide", False))
    previous = handler.setStream(stream)
    emf: list[str] = []
    metrics.set_output(emf.append)

    class Captured:
        def lines(self) -> list[dict]:
            return [json.loads(line) for line in stream.getvalue().splitlines()]

        def handled(self) -> list[dict]:
            return [line for line in self.lines() if line["message"] == "handled"]

        def metrics(self) -> list[dict]:
            return [json.loads(line) for line in emf]

        def metric(self, name: str) -> list[dict]:
            return [line for line in self.metrics() if name in line]

    yield Captured()
    metrics.set_output(None)
    handler.setStream(previous)


@pytest.fixture(scope="session")
def aws_cli() -> str:
    """The AWS CLI of requirements-dev.txt, which `make` installs beside this interpreter (not any other on PATH)."""
    path = shutil.which("aws", path=os.path.dirname(sys.executable))
    assert path, "the AWS CLI (requirements-dev.txt) is not in this virtualenv: run `make install`"
    return path


@pytest.fixture
def aws_env() -> dict[str, str]:
    """The environment of an operator's command against moto: credentials and region, no profile."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
           "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("AWS_PROFILE", None)
    return env
