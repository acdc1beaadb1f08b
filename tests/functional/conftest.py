"""Fixtures for tests that call the Chalice handlers directly (no local gateway), against moto."""
from __future__ import annotations

import itertools

import boto3
import pytest

from chalicelib import process
from chalicelib.root import Root, get_clock
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
    Set `clock.now` to move the app's time; app_env's reset() gives the app back the real clock."""
    fixed = Clock(PAST_DAY + 86400 * next(_days) + 10)
    process.install(get_clock, lambda: fixed.now)
    return fixed
