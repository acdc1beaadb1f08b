"""The chat settings: defaults, and a bad value names its variable."""
from __future__ import annotations

import json

import pytest

from chalicelib.config import ConfigError, load_settings

BASE = {"COGNITO_USER_POOL_ID": "eu-west-1_AbC123", "COGNITO_APP_CLIENT_IDS": "client1"}


def test_chat_defaults():
    settings = load_settings(BASE)
    assert settings.requests_table == "llm-ide-dev-requests"
    assert settings.default_model_id == settings.allowed_models[0]
    assert (settings.max_prompt_bytes, settings.default_max_tokens, settings.max_output_tokens) == (24576, 1024, 8192)
    assert (settings.stream_flush_bytes, settings.stream_flush_ms) == (2048, 300)
    assert settings.bedrock_worker_function == "llm-ide-dev-bedrock_worker"


def test_allow_list_and_default_model_per_stage():
    # Models the built-in table does not know are described in MODELS.
    described = {"name": "M", "maxOutputTokens": 100, "contextTokens": 1000, "tools": False, "images": False,
                 "promptCache": False, "minCacheTokens": 1024, "countTokens": False, "aliases": [], "price": None}
    settings = load_settings({**BASE, "ALLOWED_MODELS": "a.model-v1:0, us.b.model-v2:0",
                              "DEFAULT_MODEL_ID": "us.b.model-v2:0", "STREAM_FLUSH_BYTES": "0",
                              "MODELS": json.dumps({"a.model-v1:0": described, "us.b.model-v2:0": described})})
    assert settings.allowed_models == ("a.model-v1:0", "us.b.model-v2:0")
    assert settings.default_model_id == "us.b.model-v2:0" and settings.stream_flush_bytes == 0


@pytest.mark.parametrize("env, variable", [
    ({"ALLOWED_MODELS": "a.model-v1:0", "DEFAULT_MODEL_ID": "b.model-v1:0"}, "DEFAULT_MODEL_ID"),
    ({"ALLOWED_MODELS": "bad model id"}, "ALLOWED_MODELS"),
    ({"MAX_PROMPT_BYTES": "100000"}, "MAX_PROMPT_BYTES"),
    ({"MAX_OUTPUT_TOKENS": "100", "DEFAULT_MAX_TOKENS": "200"}, "DEFAULT_MAX_TOKENS"),
    ({"STREAM_FLUSH_BYTES": "-1"}, "STREAM_FLUSH_BYTES"),
    ({"STREAM_FLUSH_MS": "fast"}, "STREAM_FLUSH_MS"),
    ({"BEDROCK_MAX_ATTEMPTS": "0"}, "BEDROCK_MAX_ATTEMPTS"),
])
def test_bad_chat_settings_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load_settings({**BASE, **env})
