"""Settings from the environment, read and validated once per container.

Every variable is listed, with its default, in docs/CONFIGURATION.md. A bad
value fails the first invocation with a ConfigError that names the variable,
instead of a confusing failure deep inside a handler later.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any, TypeVar

from chalicelib.errors import BadRequest
from chalicelib.models import ModelTable, ModelTableError, build_table
from chalicelib.process import kept
from chalicelib.protocol import validate_path

T = TypeVar("T")

_USER_POOL_ID = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d_[0-9A-Za-z]+$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,255}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_KMS_KEY = re.compile(r"^(arn:aws[\w-]*:kms:[\w-]+:\d{12}:(key|alias)/[\w/\-]+|alias/[\w/\-]+|[0-9a-f\-]{36})$")
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,255}$")  # a model id, inference profile or ARN
_FUNCTION = re.compile(r"^(arn:aws[\w-]*:lambda:[\w-]+:\d{12}:function:)?[A-Za-z0-9_\-]{1,64}(:[\w$-]+)?$")
# The Management API's endpoint: https://<api id>.execute-api.<region>.amazonaws.com/<stage> in AWS.
_ENDPOINT = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
_GROUP_LIMIT_KEYS = {"requestsPerMinute": (1, 1_000_000), "tokensPerHour": (1, 1_000_000_000),
                     "githubCallsPerHour": (1, 1_000_000)}
# Money limits of LIMITS_BY_GROUP: USD (at most six decimals), kept in micro-dollars.
_GROUP_COST_KEYS = ("costUsdPerDay", "costUsdPerMonth", "pooledCostUsdPerMonth")
MAX_COST_USD = 1_000_000_000.0
# A chat's settlement is one transaction of at most 100 items: five of its own and one per group recorded.
MAX_LIMIT_GROUPS = 90
_GITHUB_GROUP = re.compile(r"^[\w+=,.@-]{1,128}$")
# Branch name components kept to what every git host and filesystem takes: no leading dot or dash,
# no trailing dot or `.lock`, no `..` (git's rules), ASCII letters, digits, `_`, `.`, `-`; a `/` after each.
_BRANCH_PREFIX = re.compile(r"^(?!.*\.\.)(?:(?!\.|-)[A-Za-z0-9_.-]{1,40}(?<!\.lock)(?<!\.)/){1,4}$")
# A repository pattern: `owner/name` as GitHub spells them, `owner/*`, or `*` (every repository).
_REPO_PATTERN = re.compile(r"^(?:\*|[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}/(?:\*|[A-Za-z0-9._-]{1,100}))$")


# Claude models on Bedrock; each stage sets its own list in .chalice/config.json.
DEFAULT_ALLOWED_MODELS = "anthropic.claude-3-haiku-20240307-v1:0,anthropic.claude-3-5-sonnet-20240620-v1:0"


class ConfigError(Exception):
    """A setting is missing or invalid. The message names the variable."""


@dataclass(frozen=True)
class Settings:
    stage: str
    region: str
    connections_table: str
    usage_table: str
    # Cognito
    user_pool_id: str
    app_client_ids: tuple[str, ...]
    token_use: str
    issuer: str
    jwks_url: str
    jwt_leeway_seconds: int
    required_groups: tuple[str, ...]
    jwks_connect_timeout: float
    jwks_read_timeout: float
    revocation_check: bool  # $connect and the REST authorizer ask Cognito (GetUser) whether the token was revoked
    cognito_endpoint: str  # Cognito's API (GetUser): the regional endpoint, or the standard variable's
    # Connections
    connection_ttl_seconds: int
    max_connections_per_user: int  # $connect is refused (429) beyond it
    connection_frame_limit: int  # frames a connection may send per window; RATE_LIMITED past it
    connection_frame_window_seconds: int
    # Limits (see chalicelib/limits)
    rate_limit_requests_per_minute: int
    token_budget_per_hour: int
    # group -> {"requestsPerMinute"?, "tokensPerHour"?, "githubCallsPerHour"?, and in micro-dollars
    # "costUsdPerDay"?, "costUsdPerMonth"?, "pooledCostUsdPerMonth"?}
    limits_by_group: Mapping[str, Mapping[str, int]]
    cost_budget_per_day: int | None  # micro-dollars per user and day; None: no daily money budget
    cost_budget_per_month: int | None  # micro-dollars per user and month
    token_reservation_floor: int
    usage_hourly_retention_hours: int
    usage_daily_retention_days: int
    # AWS clients
    aws_connect_timeout: float
    aws_read_timeout: float
    aws_max_attempts: int
    management_api_endpoint: str | None  # MANAGEMENT_API_ENDPOINT, else botocore's standard variable
    log_level: str
    log_format: str  # json (CloudWatch Logs) or text (the local stack's console)
    tracing_enabled: bool
    # Workers (Chalice names a function <app>-<stage>-<name>)
    bedrock_worker_function: str
    github_worker_function: str
    # GitHub App
    github_secret_arn: str | None
    github_api_url: str
    github_allowed_groups: tuple[str, ...]  # empty: every user may use GitHub
    # group ("*": every user) -> repository patterns; None: every repository of the app's installations
    github_repos_by_group: Mapping[str, tuple[str, ...]] | None
    github_branch_prefix: str  # every github.pr branch is made under it
    github_protected_paths: tuple[str, ...]  # written only by the groups below (".git" never)
    github_protected_path_groups: tuple[str, ...]
    github_calls_per_hour: int  # each user's share of the app's GitHub limits
    github_connect_timeout: float
    github_read_timeout: float
    github_max_attempts: int
    github_max_wait_seconds: float
    github_max_file_bytes: int
    # Sessions and the context store
    sessions_table: str
    context_bucket: str
    context_kms_key_id: str | None
    session_ttl_days: int
    history_token_limit: int
    context_token_limit: int
    context_max_bytes: int
    context_quota_bytes: int  # all of a user's context files (their own and their sessions') together
    context_quota_files: int
    context_file_ttl_days: int  # a user's own context file expires this long after it was last written
    presigned_get_seconds: int
    presigned_put_seconds: int
    message_inline_max_bytes: int
    # Chat (chalicelib/chat): what a chat.send may ask for, and how its reply is streamed
    requests_table: str
    request_ttl_seconds: int
    allowed_models: tuple[str, ...]
    default_model_id: str
    models: ModelTable  # the allowed models' limits, features and prices (chalicelib/models.py; MODELS)
    max_prompt_bytes: int
    default_max_tokens: int
    max_output_tokens: int
    stream_flush_bytes: int  # 0: coalescing off, one frame per model delta
    stream_flush_ms: int
    chat_replay_seconds: int  # how long an ended chat's frames are kept for chat.resume
    bedrock_read_timeout: float
    bedrock_max_attempts: int
    bedrock_count_tokens_timeout: float  # CountTokens' read timeout: it runs before the ack
    chat_max_tools: int
    # Request bodies larger than a frame (chat.upload): their bucket and size limit
    chat_upload_bucket: str
    chat_upload_max_bytes: int

    def management_endpoint(self, *, api_id: str | None, domain_name: str, stage: str) -> str:
        """Where to post frames for connections of the API that sent an event.

        The configured endpoint when there is one (MANAGEMENT_API_ENDPOINT, written by
        `python -m infra.sync_config` from the deployed API; the local stack sets botocore's
        AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI). Else the API's own execute-api host,
        from the event's `apiId`: the event's `domainName` is a custom domain's when one is
        mapped, and `https://<custom domain>/<stage>` is no Management API endpoint (the
        mapping's path is not the stage). The domain name is the last resort.
        """
        if self.management_api_endpoint:
            return self.management_api_endpoint
        if api_id:
            return f"https://{api_id}.execute-api.{self.region}.amazonaws.com/{stage}"
        return f"https://{domain_name}/{stage}"


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

    def csv(self, name: str, default: str | None = None, *, pattern: re.Pattern,
            required: bool = True) -> tuple[str, ...]:
        raw = self.text(name, default if default is not None else (None if required else ""))
        items = tuple(part.strip() for part in raw.split(",") if part.strip())
        if not items and required:
            raise ConfigError(f"{name} is required but empty")
        for item in items:
            if not pattern.match(item):
                raise ConfigError(f"{name} has an invalid entry {item!r}")
        return items

    def json_object(self, name: str, what: str) -> dict[str, Any] | None:
        """The variable's JSON object (of `what`, for the error), or None when it is unset or empty."""
        raw = self._env.get(name, "").strip()
        if not raw:
            return None
        try:
            data: Any = json.loads(raw)
        except ValueError:
            raise ConfigError(f"{name} is not valid JSON") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{name} must be a JSON object of {what}")
        return data

    def repos_by_group(self, name: str) -> Mapping[str, tuple[str, ...]] | None:
        """A JSON object of Cognito group ("*": every user) -> repository patterns, e.g.
        {"devs": ["octo-org/*"], "*": ["octo-org/docs"]}; unset or empty: None (no such list)."""
        data = self.json_object(name, "group name -> list of repositories")
        if data is None:
            return None
        groups: dict[str, tuple[str, ...]] = {}
        for group, patterns in data.items():
            if group != "*" and not _GITHUB_GROUP.match(group):
                raise ConfigError(f"{name} has an invalid group name {group[:40]!r}")
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise ConfigError(f"{name}: the repositories of group {group!r} must be a list of strings")
            for pattern in patterns:
                if not _REPO_PATTERN.match(pattern):
                    raise ConfigError(f"{name}: group {group!r} has an invalid repository {pattern[:60]!r} "
                                      "(owner/name, owner/* or *)")
            groups[group] = tuple(patterns)
        return MappingProxyType(groups)

    def protected_paths(self, name: str, default: str) -> tuple[str, ...]:
        """Comma-separated repository paths (a trailing `/` for a directory), each a valid relative path."""
        entries = self.csv(name, default, pattern=re.compile(r"^[^*?\[\]]+$"))
        for entry in entries:
            try:
                validate_path(entry.removesuffix("/"), field=name)
            except BadRequest as exc:
                raise ConfigError(f"{name} has an invalid path {entry[:60]!r}: {exc.message}") from None
        return entries

    def group_limits(self, name: str) -> Mapping[str, Mapping[str, int]]:
        """A JSON object of Cognito group -> limit overrides, e.g. {"power-users": {"tokensPerHour": 100000},
        "team-a": {"pooledCostUsdPerMonth": 500}}; money limits are returned in micro-dollars."""
        data = self.json_object(name, "group name -> limits")
        if data is None:
            return MappingProxyType({})
        if len(data) > MAX_LIMIT_GROUPS:
            raise ConfigError(f"{name} names {len(data)} groups; at most {MAX_LIMIT_GROUPS} are allowed")
        known = (*_GROUP_LIMIT_KEYS, *_GROUP_COST_KEYS)
        groups: dict[str, Mapping[str, int]] = {}
        for group, limits in data.items():
            if not 1 <= len(group) <= 128:
                raise ConfigError(f"{name} has an invalid group name {group[:40]!r}")
            if not isinstance(limits, dict) or not limits:
                raise ConfigError(f"{name}: the limits of group {group!r} must be a non-empty object")
            checked: dict[str, int] = {}
            for key, value in limits.items():
                if key not in known:
                    raise ConfigError(f"{name}: group {group!r} has an unknown limit {key!r} "
                                      f"(known: {', '.join(known)})")
                if key in _GROUP_COST_KEYS:
                    checked[key] = _usd_micros(value, f"{name}: {group!r}.{key}")
                    continue
                low, high = _GROUP_LIMIT_KEYS[key]
                if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                    raise ConfigError(f"{name}: {group!r}.{key} must be an integer in {low}..{high}")
                checked[key] = value
            groups[group] = MappingProxyType(checked)
        return MappingProxyType(groups)

    def usd(self, name: str) -> int | None:
        """An optional amount of USD (more than 0, at most six decimals), in micro-dollars; None when unset."""
        raw = self._env.get(name, "").strip()
        if not raw:
            return None
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a number of USD") from None
        return _usd_micros(value, name)


def read_number(environ: Mapping[str, str], name: str, default: T, cast: Callable[[str], T], *,
                minimum: float, maximum: float) -> T:
    """One number from an environment, read as the settings are: `default` when unset or empty;
    a ConfigError naming the variable when it is not a `cast` in minimum..maximum. (The local
    stack reads its own variables with it.)"""
    return _Reader(environ).number(name, default, cast, minimum=minimum, maximum=maximum)


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
    try:
        models = build_table(allowed_models, default_model_id, env.optional("MODELS"))
    except ModelTableError as exc:
        raise ConfigError(f"MODELS: {exc}") from None
    max_output_tokens = env.number("MAX_OUTPUT_TOKENS", 8192, int, minimum=1, maximum=200_000)
    token_use = env.choice("COGNITO_TOKEN_USE", "access", ("access", "id"))
    # GetUser takes an access token: with ID tokens there is nothing to ask Cognito with.
    revocation_check = env.choice("COGNITO_REVOCATION_CHECK", "true" if token_use == "access" else "false",
                                  ("true", "false")) == "true"
    if revocation_check and token_use != "access":
        raise ConfigError("COGNITO_REVOCATION_CHECK=true needs COGNITO_TOKEN_USE=access (GetUser takes one)")
    limits_by_group = env.group_limits("LIMITS_BY_GROUP")
    cost_per_day, cost_per_month = env.usd("COST_BUDGET_USD_PER_DAY"), env.usd("COST_BUDGET_USD_PER_MONTH")
    group_money = any(key in limits for limits in limits_by_group.values() for key in _GROUP_COST_KEYS)
    _check_prices(models, money_settings=[name for name, given in (
        ("COST_BUDGET_USD_PER_DAY", cost_per_day is not None),
        ("COST_BUDGET_USD_PER_MONTH", cost_per_month is not None), ("LIMITS_BY_GROUP", group_money)) if given])
    return Settings(
        stage=stage,
        region=region,
        connections_table=env.text("CONNECTIONS_TABLE", f"llm-ide-{stage}-connections", pattern=_NAME),
        usage_table=env.text("USAGE_TABLE", f"llm-ide-{stage}-usage", pattern=_NAME),
        user_pool_id=user_pool_id,
        app_client_ids=env.csv("COGNITO_APP_CLIENT_IDS", pattern=re.compile(r"^[A-Za-z0-9+]{1,128}$")),
        token_use=token_use,
        issuer=issuer,
        jwks_url=env.text("COGNITO_JWKS_URL", f"{issuer}/.well-known/jwks.json",
                         pattern=re.compile(r"^https?://\S+$")),
        jwt_leeway_seconds=env.number("JWT_LEEWAY_SECONDS", 5, int, minimum=0, maximum=300),
        # Cognito group names: letters, marks, symbols, digits, punctuation; a comma separates them here.
        required_groups=env.csv("REQUIRED_GROUPS", pattern=re.compile(r"^[^\s,]{1,128}$"), required=False),
        jwks_connect_timeout=env.number("JWKS_CONNECT_TIMEOUT", 1.0, float, minimum=0.1, maximum=10),
        jwks_read_timeout=env.number("JWKS_READ_TIMEOUT", 2.0, float, minimum=0.1, maximum=10),
        revocation_check=revocation_check,
        # botocore's own variable for the service (the local stack points it at its Cognito), else the region's.
        cognito_endpoint=env.text("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER",
                                  environ.get("AWS_ENDPOINT_URL") or f"https://cognito-idp.{pool_region}.amazonaws.com",
                                  pattern=re.compile(r"^https?://[^\s?#]+$")).rstrip("/"),
        # API Gateway closes a WebSocket after 2 hours whatever happens.
        connection_ttl_seconds=env.number("CONNECTION_TTL_SECONDS", 7200, int, minimum=60, maximum=86400),
        max_connections_per_user=env.number("MAX_CONNECTIONS_PER_USER", 10, int, minimum=1, maximum=1000),
        connection_frame_limit=env.number("CONNECTION_FRAME_LIMIT", 100, int, minimum=1, maximum=100_000),
        connection_frame_window_seconds=env.number("CONNECTION_FRAME_WINDOW_SECONDS", 10, int, minimum=1,
                                                   maximum=3600),
        rate_limit_requests_per_minute=env.number("RATE_LIMIT_REQUESTS_PER_MINUTE", 100, int,
                                                  minimum=1, maximum=1_000_000),
        token_budget_per_hour=env.number("TOKEN_BUDGET_PER_HOUR", 10000, int, minimum=1, maximum=1_000_000_000),
        limits_by_group=limits_by_group,
        cost_budget_per_day=cost_per_day,
        cost_budget_per_month=cost_per_month,
        token_reservation_floor=env.number("TOKEN_RESERVATION_FLOOR", 256, int, minimum=1, maximum=100_000),
        # An hour's records also answer the day's request count, so they outlive the day.
        usage_hourly_retention_hours=env.number("USAGE_HOURLY_RETENTION_HOURS", 48, int, minimum=25, maximum=24 * 400),
        usage_daily_retention_days=env.number("USAGE_DAILY_RETENTION_DAYS", 400, int, minimum=2, maximum=3650),
        aws_connect_timeout=env.number("AWS_CONNECT_TIMEOUT", 2.0, float, minimum=0.1, maximum=60),
        aws_read_timeout=env.number("AWS_READ_TIMEOUT", 10.0, float, minimum=0.1, maximum=900),
        aws_max_attempts=env.number("AWS_MAX_ATTEMPTS", 3, int, minimum=1, maximum=10),
        management_api_endpoint=((_optional_matching(env, "MANAGEMENT_API_ENDPOINT", _ENDPOINT) or "").rstrip("/")
                                 or env.optional("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI")),
        log_level=env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        log_format=env.choice("LOG_FORMAT", "json", ("json", "text")),
        tracing_enabled=env.choice("TRACING_ENABLED", "false", ("true", "false")) == "true",
        bedrock_worker_function=env.text("BEDROCK_WORKER_FUNCTION", f"llm-ide-{stage}-bedrock_worker",
                                         pattern=_FUNCTION),
        github_worker_function=env.text("GITHUB_WORKER_FUNCTION", f"llm-ide-{stage}-github_worker",
                                        pattern=_FUNCTION),
        github_secret_arn=env.optional("GITHUB_SECRET_ARN"),
        github_api_url=env.text("GITHUB_API_URL", "https://api.github.com",
                                pattern=re.compile(r"^https?://[^\s?#]+$")).rstrip("/"),
        github_allowed_groups=env.csv("GITHUB_ALLOWED_GROUPS", pattern=_GITHUB_GROUP, required=False),
        github_repos_by_group=env.repos_by_group("GITHUB_REPOS_BY_GROUP"),
        github_branch_prefix=env.text("GITHUB_BRANCH_PREFIX", "llm-ide/", pattern=_BRANCH_PREFIX),
        github_protected_paths=env.protected_paths("GITHUB_PROTECTED_PATHS", ".github/"),
        github_protected_path_groups=env.csv("GITHUB_PROTECTED_PATH_GROUPS", pattern=_GITHUB_GROUP, required=False),
        # A tenth of the 5,000 requests an hour GitHub grants an installation: ten users at their
        # limit still leave the app some.
        github_calls_per_hour=env.number("GITHUB_CALLS_PER_HOUR", 500, int, minimum=1, maximum=1_000_000),
        github_connect_timeout=env.number("GITHUB_CONNECT_TIMEOUT", 3.0, float, minimum=0.1, maximum=60),
        github_read_timeout=env.number("GITHUB_READ_TIMEOUT", 10.0, float, minimum=0.1, maximum=300),
        github_max_attempts=env.number("GITHUB_MAX_ATTEMPTS", 4, int, minimum=1, maximum=10),
        # The longest a worker sleeps in total on GitHub's limits and errors before giving up.
        github_max_wait_seconds=env.number("GITHUB_MAX_WAIT_SECONDS", 20.0, float, minimum=0, maximum=600),
        # A file must fit, JSON-encoded, in one WebSocket frame (128 KiB).
        github_max_file_bytes=env.number("GITHUB_MAX_FILE_BYTES", 96 * 1024, int, minimum=1, maximum=120 * 1024),
        sessions_table=env.text("SESSIONS_TABLE", f"llm-ide-{stage}-sessions", pattern=_NAME),
        # The physical name carries the account id (infra/resources.py); deployments set it.
        context_bucket=env.text("CONTEXT_BUCKET", f"llm-ide-{stage}-context", pattern=_BUCKET),
        context_kms_key_id=_optional_matching(env, "CONTEXT_KMS_KEY_ID", _KMS_KEY),
        session_ttl_days=env.number("SESSION_TTL_DAYS", 30, int, minimum=1, maximum=3650),
        history_token_limit=env.number("HISTORY_TOKEN_LIMIT", 4000, int, minimum=0, maximum=1_000_000),
        context_token_limit=env.number("CONTEXT_TOKEN_LIMIT", 8000, int, minimum=0, maximum=1_000_000),
        context_max_bytes=env.number("CONTEXT_MAX_BYTES", 5 * 1024 * 1024, int, minimum=1, maximum=5 * 1024 ** 3),
        context_quota_bytes=env.number("CONTEXT_QUOTA_BYTES", 100 * 1024 * 1024, int, minimum=1,
                                       maximum=5 * 1024 ** 4),
        context_quota_files=env.number("CONTEXT_QUOTA_FILES", 1000, int, minimum=1, maximum=1_000_000),
        context_file_ttl_days=env.number("CONTEXT_FILE_TTL_DAYS", 90, int, minimum=1, maximum=3650),
        # A client fetches or uploads at once; SigV4 allows up to 7 days, which no client needs.
        presigned_get_seconds=env.number("PRESIGNED_GET_SECONDS", 60, int, minimum=5, maximum=3600),
        presigned_put_seconds=env.number("PRESIGNED_PUT_SECONDS", 60, int, minimum=5, maximum=3600),
        # Above 100 KiB a message would not fit one 128 KiB WebSocket frame, nor several in a DynamoDB item.
        message_inline_max_bytes=env.number("MESSAGE_INLINE_MAX_BYTES", 100 * 1024, int,
                                            minimum=1024, maximum=100 * 1024),
        requests_table=env.text("REQUESTS_TABLE", f"llm-ide-{stage}-requests", pattern=_NAME),
        request_ttl_seconds=env.number("REQUEST_TTL_SECONDS", 86400, int, minimum=600, maximum=30 * 86400),
        allowed_models=allowed_models,
        default_model_id=default_model_id,
        models=models,
        # A prompt travels in one frame (32 KiB), with its JSON envelope.
        max_prompt_bytes=env.number("MAX_PROMPT_BYTES", 24576, int, minimum=1, maximum=32768),
        default_max_tokens=env.number("DEFAULT_MAX_TOKENS", min(1024, max_output_tokens), int,
                                      minimum=1, maximum=max_output_tokens),
        max_output_tokens=max_output_tokens,
        stream_flush_bytes=env.number("STREAM_FLUSH_BYTES", 2048, int, minimum=0, maximum=65536),
        stream_flush_ms=env.number("STREAM_FLUSH_MS", 300, int, minimum=0, maximum=5000),
        chat_replay_seconds=env.number("CHAT_REPLAY_SECONDS", 3600, int, minimum=60, maximum=7 * 86400),
        bedrock_read_timeout=env.number("BEDROCK_READ_TIMEOUT", 60.0, float, minimum=1, maximum=900),
        bedrock_max_attempts=env.number("BEDROCK_MAX_ATTEMPTS", 3, int, minimum=1, maximum=10),
        # CountTokens answers in tens of milliseconds; a count that takes longer reserves the bound instead.
        bedrock_count_tokens_timeout=env.number("BEDROCK_COUNT_TOKENS_TIMEOUT", 2.0, float, minimum=0.1, maximum=30),
        # OpenAI's limit on a request's functions; agents with many MCP servers come near it.
        chat_max_tools=env.number("CHAT_MAX_TOOLS", 128, int, minimum=1, maximum=1000),
        # The physical name carries the account id (infra/resources.py); deployments set it.
        chat_upload_bucket=env.text("CHAT_UPLOAD_BUCKET", f"llm-ide-{stage}-uploads", pattern=_BUCKET),
        # The protocol's default; the worker holds a body a few times over while it builds the model call
        # (docs/PERFORMANCE.md), so the ceiling keeps it well inside the worker's memory.
        chat_upload_max_bytes=env.number("CHAT_UPLOAD_MAX_BYTES", 8 * 1024 * 1024, int, minimum=32 * 1024,
                                         maximum=32 * 1024 * 1024),
    )


def _usd_micros(value: Any, where: str) -> int:
    """A USD amount as micro-dollars: a number above 0 and at most MAX_COST_USD, with at most six decimals."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_COST_USD:
        raise ConfigError(f"{where} must be a number of USD above 0 and at most {MAX_COST_USD:.0f}")
    micros = Decimal(str(value)) * 10**6
    if micros % 1:
        raise ConfigError(f"{where} has more than six decimals (amounts are kept in micro-dollars)")
    return int(micros)


def _check_prices(models: ModelTable, *, money_settings: list[str]) -> None:
    """A money budget needs every allowed model's price: a chat on a model without one could not be charged."""
    unpriced = [model_id for model_id, spec in models.models.items() if spec.price is None]
    if money_settings and unpriced:
        raise ConfigError(f"{' and '.join(money_settings)} set a money budget, but MODELS gives no price for "
                          f"{', '.join(unpriced)}")


def _optional_matching(env: _Reader, name: str, pattern: re.Pattern) -> str | None:
    value = env.optional(name)
    if value is not None and not pattern.match(value):
        raise ConfigError(f"{name}={value!r} is not valid")
    return value


@kept
def get_settings() -> Settings:
    """The container's settings, validated on first use and then reused."""
    return load_settings(os.environ)
