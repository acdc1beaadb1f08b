"""The model table: Bedrock's limits and prices for every model a stage allows, overrides, names."""
from __future__ import annotations

import json

import pytest

from chalicelib.config import DEFAULT_ALLOWED_MODELS, ConfigError, load_settings
from chalicelib.models import ModelTableError, build_table, foundation_id
from infra.stages import STAGES

BASE = {"COGNITO_USER_POOL_ID": "eu-west-1_AbC123", "COGNITO_APP_CLIENT_IDS": "client1"}


def test_every_model_a_stage_allows_is_in_the_built_in_table():
    lists = [tuple(DEFAULT_ALLOWED_MODELS.split(","))] + [stage.allowed_models for stage in STAGES.values()]
    for allowed in lists:
        table = build_table(allowed, allowed[0], None)
        assert list(table.models) == list(allowed)


def test_the_default_models_caps_are_bedrocks():
    table = load_settings(BASE).models
    haiku, sonnet = table.models.values()
    assert (haiku.max_output_tokens, sonnet.max_output_tokens) == (4096, 4096)  # the example
    assert haiku.price is not None and (haiku.price.input, haiku.price.output) == (0.25, 1.25)
    assert not haiku.prompt_cache and not haiku.count_tokens and sonnet.count_tokens


@pytest.mark.parametrize("model_id, foundation", [
    ("us.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic.claude-sonnet-4-20250514-v1:0"),
    ("global.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic.claude-sonnet-4-20250514-v1:0"),
    ("eu.amazon.nova-micro-v1:0", "amazon.nova-micro-v1:0"),
    ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/apac.anthropic.claude-3-5-haiku-20241022-v1:0",
     "anthropic.claude-3-5-haiku-20241022-v1:0"),
    ("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0", "amazon.nova-micro-v1:0"),
    ("amazon.nova-micro-v1:0", "amazon.nova-micro-v1:0"),
])
def test_a_profile_id_or_arn_is_its_foundation_model(model_id, foundation):
    assert foundation_id(model_id) == foundation
    spec = build_table((model_id,), model_id, None).models[model_id]
    assert spec.id == model_id and spec.foundation_id == foundation


def test_an_id_or_an_alias_names_a_model_and_anything_else_none():
    allowed = ("us.anthropic.claude-sonnet-4-20250514-v1:0", "us.anthropic.claude-3-5-haiku-20241022-v1:0")
    table = build_table(allowed, allowed[1], None)
    sonnet, haiku = table.resolve("claude-sonnet-4-20250514"), table.resolve(allowed[1])
    assert sonnet is not None and sonnet.id == allowed[0]  # as Claude Code names it
    assert haiku is not None and haiku.id == allowed[1]
    assert table.resolve("anthropic.claude-sonnet-4-20250514-v1:0") is None  # not allowed as such
    assert table.resolve("gpt-4o") is None


def test_models_list_has_the_default_first_and_the_protocols_shape():
    allowed = ("us.anthropic.claude-sonnet-4-20250514-v1:0", "amazon.nova-micro-v1:0")
    models = build_table(allowed, "amazon.nova-micro-v1:0", None).wire()
    assert [m["id"] for m in models] == ["amazon.nova-micro-v1:0", allowed[0]]
    assert [m["default"] for m in models] == [True, False]
    sonnet = models[1]
    assert sonnet == {"id": allowed[0], "name": "Claude Sonnet 4", "default": False, "maxOutputTokens": 64000,
                      "contextTokens": 200000, "supports": {"tools": True, "images": True, "promptCache": True},
                      "aliases": ["claude-sonnet-4-20250514", "claude-sonnet-4-0"],
                      "price": {"input": 3.0, "output": 15.0, "cacheRead": 0.3, "cacheWrite": 3.75}}


def test_a_stage_overrides_fields_of_a_known_model():
    allowed = ("amazon.nova-micro-v1:0",)
    overrides = {"amazon.nova-micro-v1:0": {"maxOutputTokens": 10000, "aliases": ["small"],
                                            "price": {"input": 0.04, "output": 0.16, "cacheRead": 0.01,
                                                      "cacheWrite": 0.04}}}
    spec = build_table(allowed, allowed[0], json.dumps(overrides)).models[allowed[0]]
    assert spec.max_output_tokens == 10000 and spec.aliases == ("small",)
    assert spec.price is not None and spec.price.output == 0.16
    assert spec.context_tokens == 128_000  # what the override leaves alone stays Bedrock's


@pytest.mark.parametrize("env, message", [
    ({"ALLOWED_MODELS": "acme.unknown-v1:0"}, "not in the built-in table"),
    ({"MODELS": "[]"}, "JSON object"),
    ({"MODELS": "{"}, "not valid JSON"),
    ({"MODELS": json.dumps({"amazon.nova-micro-v1:0": {}})}, "does not allow"),
    ({"MODELS": json.dumps({DEFAULT_ALLOWED_MODELS.split(",")[0]: {"maxOutputTokens": "8k"}})}, "wrong type"),
    ({"MODELS": json.dumps({DEFAULT_ALLOWED_MODELS.split(",")[0]: {"colour": "red"}})}, "unknown field"),
    ({"MODELS": json.dumps({DEFAULT_ALLOWED_MODELS.split(",")[0]: {"price": {"input": 1}}})}, "price"),
    ({"MODELS": json.dumps({DEFAULT_ALLOWED_MODELS.split(",")[0]: {"maxOutputTokens": 0}})}, "maxOutputTokens"),
    ({"MODELS": json.dumps({DEFAULT_ALLOWED_MODELS.split(",")[0]: {"aliases": ["claude-3-5-sonnet-20240620"]}})},
     "used by"),
])
def test_a_bad_model_table_names_the_variable_and_the_fault(env, message):
    with pytest.raises(ConfigError, match=f"MODELS.*{message}"):
        load_settings({**BASE, **env})


def test_table_errors_are_value_errors_for_the_infra_code():
    with pytest.raises(ModelTableError):
        build_table(("acme.unknown-v1:0",), "acme.unknown-v1:0", None)
