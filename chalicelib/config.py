"""Settings from the environment, read and validated once per container.

Every variable is listed, with its default, in docs/CONFIGURATION.md. A bad
value fails the first invocation with a ConfigError that names the variable,
instead of a confusing failure deep inside a handler later.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from typing import Callable, Mapping, TypeVar

T = TypeVar("T")

_USER_POOL_ID = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d_[0-9A-Za-z]+$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,255}$")
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,255}$")  # a model id, inference profile or ARN
_FUNCTION = re.compile(r"^(arn:aws[\w-]*:lambda:[\w-]+:\d{12}:function:)?[A-Za-z0-9_\-]{1,64}(:[\w$-]+)?$")


# Claude models on Bedrock; each stage sets its own list in .chalice/config.json.
DEFAULT_ALLOWED_MODELS = "anthropic.claude-3-haiku-20240307-v1:0,anthropic.claude-3-5-sonnet-20240620-v1:0"


class ConfigError(Exception):
    """A setting is missing or invalid. The message names the variable."""


@dataclass(frozen=True)
class Settings:
    stage: str
    region: str
    connections_table: str
    # Cognito
    user_pool_id: str
    app_client_ids: tuple[str, ...]
    token_use: str
    issuer: str
    jwks_url: str
    jwt_leeway_seconds: int
    # Connections
    connection_ttl_seconds: int
    # AWS clients
    aws_connect_timeout: float
    aws_read_timeout: float
    aws_max_attempts: int
    management_api_endpoint: str | None
    log_level: str
    # Workers (Chalice names a function <app>-<stage>-<name>)
    bedrock_worker_function: str
    github_worker_function: str
    # Chat (chalicelib/chat): what a chat.send may ask for, and how its reply is streamed
    requests_table: str
    request_ttl_seconds: int
    allowed_models: tuple[str, ...]
    default_model_id: str
    max_prompt_bytes: int
    default_max_tokens: int
    max_output_tokens: int
    stream_flush_bytes: int  # 0: coalescing off, one frame per model delta
    stream_flush_ms: int
    bedrock_read_timeout: float
    bedrock_max_attempts: int

    def management_endpoint(self, domain_name: str, stage: str) -> str:
        """Where to post frames for connections of the API that sent an event.

        API Gateway's event names the API's domain and stage; the standard
        botocore variable overrides it (the local stack sets it).
        """
        return self.management_api_endpoint or f"https://{domain_name}/{stage}"


class _Reader:
    """Reads typed values from an environment mapping, naming the variable on error."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._env = environ

    def text(self, name: str, default: str | None = None, *, pattern: re.Pattern | None = None) -> str:
        value = self._env.get(name, "").strip() or default
        if value is None:
            raise ConfigError(f"{name} is required but not set")
        if pattern is not None and not pattern.match(value):
            raise ConfigError(f"{name}={value!r} is not valid")
        return value

    def optional(self, name: str) -> str | None:
        return self._env.get(name, "").strip() or None

    def number(self, name: str, default: T, cast: Callable[[str], T], *, minimum: float, maximum: float) -> T:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = cast(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a {cast.__name__}") from None
        if not minimum <= value <= maximum:  # type: ignore[operator]
            raise ConfigError(f"{name}={raw} is outside {minimum}..{maximum}")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in choices:
            raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
        return value

    def csv(self, name: str, default: str | None = None, *, pattern: re.Pattern) -> tuple[str, ...]:
        items = tuple(part.strip() for part in self.text(name, default).split(",") if part.strip())
        if not items:
            raise ConfigError(f"{name} is required but empty")
        for item in items:
            if not pattern.match(item):
                raise ConfigError(f"{name} has an invalid entry {item!r}")
        return items


def load_settings(environ: Mapping[str, str]) -> Settings:
    env = _Reader(environ)
    stage = env.text("STAGE", "dev", pattern=re.compile(r"^[a-z][a-z0-9-]{0,30}$"))
    region = env.text("AWS_REGION", environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                     pattern=re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$"))
    user_pool_id = env.text("COGNITO_USER_POOL_ID", pattern=_USER_POOL_ID)
    pool_region = user_pool_id.split("_", 1)[0]
    issuer = env.text("COGNITO_ISSUER", f"https://cognito-idp.{pool_region}.amazonaws.com/{user_pool_id}",
                     pattern=re.compile(r"^https?://\S+$"))
    allowed_models = env.csv("ALLOWED_MODELS", DEFAULT_ALLOWED_MODELS, pattern=_MODEL_ID)
    default_model_id = env.text("DEFAULT_MODEL_ID", allowed_models[0], pattern=_MODEL_ID)
    if default_model_id not in allowed_models:
        raise ConfigError(f"DEFAULT_MODEL_ID={default_model_id!r} is not in ALLOWED_MODELS")
    max_output_tokens = env.number("MAX_OUTPUT_TOKENS", 8192, int, minimum=1, maximum=200_000)
    return Settings(
        stage=stage,
        region=region,
        connections_table=env.text("CONNECTIONS_TABLE", f"llm-ide-{stage}-connections", pattern=_NAME),
        user_pool_id=user_pool_id,
        app_client_ids=env.csv("COGNITO_APP_CLIENT_IDS", pattern=re.compile(r"^[A-Za-z0-9+]{1,128}$")),
        token_use=env.choice("COGNITO_TOKEN_USE", "access", ("access", "id")),
        issuer=issuer,
        jwks_url=env.text("COGNITO_JWKS_URL", f"{issuer}/.well-known/jwks.json",
                         pattern=re.compile(r"^https?://\S+$")),
        jwt_leeway_seconds=env.number("JWT_LEEWAY_SECONDS", 5, int, minimum=0, maximum=300),
        # API Gateway closes a WebSocket after 2 hours whatever happens.
        connection_ttl_seconds=env.number("CONNECTION_TTL_SECONDS", 7200, int, minimum=60, maximum=86400),
        aws_connect_timeout=env.number("AWS_CONNECT_TIMEOUT", 2.0, float, minimum=0.1, maximum=60),
        aws_read_timeout=env.number("AWS_READ_TIMEOUT", 10.0, float, minimum=0.1, maximum=900),
        aws_max_attempts=env.number("AWS_MAX_ATTEMPTS", 3, int, minimum=1, maximum=10),
        management_api_endpoint=env.optional("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"),
        log_level=env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        bedrock_worker_function=env.text("BEDROCK_WORKER_FUNCTION", f"llm-ide-{stage}-bedrock_worker",
                                         pattern=_FUNCTION),
        github_worker_function=env.text("GITHUB_WORKER_FUNCTION", f"llm-ide-{stage}-github_worker",
                                        pattern=_FUNCTION),
        requests_table=env.text("REQUESTS_TABLE", f"llm-ide-{stage}-requests", pattern=_NAME),
        request_ttl_seconds=env.number("REQUEST_TTL_SECONDS", 86400, int, minimum=600, maximum=30 * 86400),
        allowed_models=allowed_models,
        default_model_id=default_model_id,
        # A prompt travels in one frame (32 KiB), with its JSON envelope.
        max_prompt_bytes=env.number("MAX_PROMPT_BYTES", 24576, int, minimum=1, maximum=32768),
        default_max_tokens=env.number("DEFAULT_MAX_TOKENS", min(1024, max_output_tokens), int,
                                      minimum=1, maximum=max_output_tokens),
        max_output_tokens=max_output_tokens,
        stream_flush_bytes=env.number("STREAM_FLUSH_BYTES", 2048, int, minimum=0, maximum=65536),
        stream_flush_ms=env.number("STREAM_FLUSH_MS", 300, int, minimum=0, maximum=5000),
        bedrock_read_timeout=env.number("BEDROCK_READ_TIMEOUT", 60.0, float, minimum=1, maximum=900),
        bedrock_max_attempts=env.number("BEDROCK_MAX_ATTEMPTS", 3, int, minimum=1, maximum=10),
    )


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The container's settings, validated on first use and then reused."""
    return load_settings(os.environ)
