"""Fixtures for tests that call the Chalice handlers directly (no local gateway), and the GitHub
client's world of fakes."""
from __future__ import annotations

import boto3
import pytest

from chalicelib.root import Root
from devserver.github import new_app_key
from tests.fakes import GitHubWorld, RecordingSender


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


@pytest.fixture(scope="module")
def keys():
    return new_app_key()


@pytest.fixture
def world(keys) -> GitHubWorld:
    return GitHubWorld(keys)
