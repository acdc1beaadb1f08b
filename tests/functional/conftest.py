"""Fixtures for tests that call the Chalice handlers directly (no local gateway), against moto."""
from __future__ import annotations

import pytest

from chalicelib.root import Root
from tests.fakes import RecordingSender


@pytest.fixture
def sender(monkeypatch, app_env):
    recording = RecordingSender()
    monkeypatch.setattr(Root, "sender", lambda self, endpoint: recording)
    return recording
