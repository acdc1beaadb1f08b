"""Fixtures of the unit tests: pure and fast, no server, no moto, no emulator, no subprocess."""
from __future__ import annotations

import pytest

from devserver.github import new_app_key
from tests.fakes import GitHubWorld


@pytest.fixture(scope="module")
def keys():
    return new_app_key()


@pytest.fixture
def world(keys) -> GitHubWorld:
    return GitHubWorld(keys)
