"""Fixtures for tests that call the Chalice handlers directly (no local gateway), against moto."""
from __future__ import annotations

import boto3
import pytest

from chalicelib.root import Root
from tests.fakes import RecordingSender


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
