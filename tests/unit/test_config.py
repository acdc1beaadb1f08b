from __future__ import annotations

import pytest

from chalicelib.config import ConfigError, load_settings

BASE = {"COGNITO_USER_POOL_ID": "eu-west-1_AbC123", "COGNITO_APP_CLIENT_IDS": "client1, client2"}


def test_defaults_are_derived_from_the_pool():
    settings = load_settings(BASE)
    assert settings.stage == "dev" and settings.token_use == "access"
    assert settings.issuer == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
    assert settings.jwks_url == settings.issuer + "/.well-known/jwks.json"
    assert settings.app_client_ids == ("client1", "client2")
    assert settings.connections_table == "llm-ide-dev-connections"
    assert settings.connection_ttl_seconds == 7200


def test_session_and_context_defaults():
    settings = load_settings(BASE)
    assert settings.sessions_table == "llm-ide-dev-sessions" and settings.context_bucket == "llm-ide-dev-context"
    assert (settings.session_ttl_days, settings.history_token_limit, settings.context_token_limit) == (30, 4000, 8000)
    assert settings.context_max_bytes == 5 * 1024 * 1024 and settings.message_inline_max_bytes == 100 * 1024
    assert settings.context_kms_key_id is None
    arn = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert load_settings({**BASE, "CONTEXT_KMS_KEY_ID": arn}).context_kms_key_id == arn
    # The app's default is the stages' default, which the bucket's expiry rule is built from.
    from infra.resources import DEFAULT_SESSION_TTL_DAYS

    assert settings.session_ttl_days == DEFAULT_SESSION_TTL_DAYS


def test_management_endpoint_from_the_setting_else_the_events_api_never_a_custom_domain():
    settings = load_settings({**BASE, "AWS_REGION": "eu-west-1"})
    # A custom domain mapped to the API: the event's domain name is no Management API endpoint.
    assert settings.management_endpoint(api_id="abc123", domain_name="ide.example.com", stage="prod") == \
        "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"
    assert settings.management_endpoint(api_id=None, domain_name="abc.execute-api.eu-west-1.amazonaws.com",
                                        stage="prod") == "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
    deployed = load_settings({**BASE, "MANAGEMENT_API_ENDPOINT": "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/"})
    assert deployed.management_endpoint(api_id="other", domain_name="ide.example.com", stage="ws") == \
        "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"
    local = load_settings({**BASE, "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": "http://127.0.0.1:8000/local"})
    assert local.management_endpoint(api_id="x", domain_name="ignored", stage="prod") == "http://127.0.0.1:8000/local"


@pytest.mark.parametrize("env, variable", [
    ({"COGNITO_APP_CLIENT_IDS": "c"}, "COGNITO_USER_POOL_ID"),
    ({**BASE, "COGNITO_USER_POOL_ID": "not-a-pool"}, "COGNITO_USER_POOL_ID"),
    ({**BASE, "COGNITO_APP_CLIENT_IDS": " , "}, "COGNITO_APP_CLIENT_IDS"),
    ({**BASE, "COGNITO_TOKEN_USE": "refresh"}, "COGNITO_TOKEN_USE"),
    ({**BASE, "JWT_LEEWAY_SECONDS": "soon"}, "JWT_LEEWAY_SECONDS"),
    ({**BASE, "JWT_LEEWAY_SECONDS": "9999"}, "JWT_LEEWAY_SECONDS"),
    ({**BASE, "CONNECTIONS_TABLE": "bad name!"}, "CONNECTIONS_TABLE"),
    ({**BASE, "AWS_READ_TIMEOUT": "-1"}, "AWS_READ_TIMEOUT"),
    ({**BASE, "LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ({**BASE, "GITHUB_API_URL": "ftp://github.example"}, "GITHUB_API_URL"),
    ({**BASE, "GITHUB_ALLOWED_GROUPS": "ok, bad group"}, "GITHUB_ALLOWED_GROUPS"),
    ({**BASE, "GITHUB_MAX_FILE_BYTES": "200000"}, "GITHUB_MAX_FILE_BYTES"),
    ({**BASE, "SESSION_TTL_DAYS": "0"}, "SESSION_TTL_DAYS"),
    ({**BASE, "MESSAGE_INLINE_MAX_BYTES": "200000"}, "MESSAGE_INLINE_MAX_BYTES"),
    ({**BASE, "CONTEXT_BUCKET": "Bad_Bucket"}, "CONTEXT_BUCKET"),
    ({**BASE, "CONTEXT_KMS_KEY_ID": "not a key"}, "CONTEXT_KMS_KEY_ID"),
    ({**BASE, "HISTORY_TOKEN_LIMIT": "many"}, "HISTORY_TOKEN_LIMIT"),
    ({**BASE, "CONTEXT_QUOTA_BYTES": "0"}, "CONTEXT_QUOTA_BYTES"),
    ({**BASE, "CONTEXT_QUOTA_FILES": "lots"}, "CONTEXT_QUOTA_FILES"),
    ({**BASE, "CONTEXT_FILE_TTL_DAYS": "0"}, "CONTEXT_FILE_TTL_DAYS"),
    ({**BASE, "PRESIGNED_GET_SECONDS": "604800"}, "PRESIGNED_GET_SECONDS"),
    ({**BASE, "PRESIGNED_PUT_SECONDS": "1"}, "PRESIGNED_PUT_SECONDS"),
    ({**BASE, "MANAGEMENT_API_ENDPOINT": "wss://abc.execute-api.us-east-1.amazonaws.com/prod"},
     "MANAGEMENT_API_ENDPOINT"),
    ({**BASE, "COGNITO_REVOCATION_CHECK": "sometimes"}, "COGNITO_REVOCATION_CHECK"),
    ({**BASE, "COGNITO_TOKEN_USE": "id", "COGNITO_REVOCATION_CHECK": "true"}, "COGNITO_REVOCATION_CHECK"),
])
def test_invalid_settings_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load_settings(env)


def test_limit_defaults():
    settings = load_settings(BASE)
    assert (settings.rate_limit_requests_per_minute, settings.token_budget_per_hour) == (100, 10000)
    assert settings.limits_by_group == {} and settings.token_reservation_floor == 256
    assert settings.usage_table == "llm-ide-dev-usage"
    assert (settings.usage_hourly_retention_hours, settings.usage_daily_retention_days) == (48, 400)


def test_limits_by_group_is_parsed():
    settings = load_settings({**BASE, "LIMITS_BY_GROUP": '{"power-users": {"requestsPerMinute": 300, '
                                                         '"tokensPerHour": 100000}, "trial": {"tokensPerHour": 1}}'})
    assert settings.limits_by_group == {"power-users": {"requestsPerMinute": 300, "tokensPerHour": 100000},
                                        "trial": {"tokensPerHour": 1}}


@pytest.mark.parametrize("value", [
    "not json", "[]", '{"g": 5}', '{"g": {}}', '{"g": {"requestsPerHour": 5}}', '{"g": {"tokensPerHour": 0}}',
    '{"g": {"tokensPerHour": "100"}}', '{"g": {"requestsPerMinute": true}}', '{"": {"tokensPerHour": 5}}',
])
def test_invalid_limits_by_group_names_the_variable(value):
    with pytest.raises(ConfigError, match="LIMITS_BY_GROUP"):
        load_settings({**BASE, "LIMITS_BY_GROUP": value})


@pytest.mark.parametrize("name, value", [
    ("RATE_LIMIT_REQUESTS_PER_MINUTE", "0"), ("TOKEN_BUDGET_PER_HOUR", "lots"), ("TOKEN_RESERVATION_FLOOR", "0"),
    ("USAGE_HOURLY_RETENTION_HOURS", "24"), ("USAGE_DAILY_RETENTION_DAYS", "1"), ("USAGE_TABLE", "bad name"),
])
def test_invalid_limit_settings_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({**BASE, name: value})


def test_github_defaults_and_groups():
    settings = load_settings(BASE)
    assert settings.github_api_url == "https://api.github.com" and settings.github_secret_arn is None
    assert settings.github_allowed_groups == ()
    ghes = load_settings({**BASE, "GITHUB_API_URL": "https://ghe.example.com/api/v3/",
                          "GITHUB_ALLOWED_GROUPS": "devs, admins"})
    assert ghes.github_api_url == "https://ghe.example.com/api/v3"
    assert ghes.github_allowed_groups == ("devs", "admins")


def test_github_scope_defaults():
    settings = load_settings(BASE)
    assert settings.github_repos_by_group is None  # unset: every repository of the installations
    assert settings.github_branch_prefix == "llm-ide/"
    assert settings.github_protected_paths == (".github/",) and settings.github_protected_path_groups == ()
    assert settings.github_calls_per_hour == 500


def test_github_scope_settings_are_parsed():
    settings = load_settings({**BASE, "GITHUB_REPOS_BY_GROUP": '{"devs": ["octo-org/*", "other/app"], "*": []}',
                              "GITHUB_BRANCH_PREFIX": "ide/bot/", "GITHUB_PROTECTED_PATHS": ".github/, CODEOWNERS",
                              "GITHUB_PROTECTED_PATH_GROUPS": "release-managers", "GITHUB_CALLS_PER_HOUR": "50",
                              "LIMITS_BY_GROUP": '{"bots": {"githubCallsPerHour": 2000}}'})
    assert settings.github_repos_by_group == {"devs": ("octo-org/*", "other/app"), "*": ()}
    assert settings.github_branch_prefix == "ide/bot/"
    assert settings.github_protected_paths == (".github/", "CODEOWNERS")
    assert settings.github_protected_path_groups == ("release-managers",)
    assert settings.github_calls_per_hour == 50 and settings.limits_by_group["bots"] == {"githubCallsPerHour": 2000}
    assert load_settings({**BASE, "GITHUB_REPOS_BY_GROUP": "{}"}).github_repos_by_group == {}  # set: nothing granted


@pytest.mark.parametrize("name, value", [
    ("GITHUB_REPOS_BY_GROUP", "not json"), ("GITHUB_REPOS_BY_GROUP", '["octo-org/*"]'),
    ("GITHUB_REPOS_BY_GROUP", '{"devs": "octo-org/*"}'), ("GITHUB_REPOS_BY_GROUP", '{"devs": ["octo-org"]}'),
    ("GITHUB_REPOS_BY_GROUP", '{"devs": ["octo-org/a*"]}'), ("GITHUB_REPOS_BY_GROUP", '{"bad group": ["o/r"]}'),
    ("GITHUB_REPOS_BY_GROUP", '{"devs": ["*/r"]}'), ("GITHUB_REPOS_BY_GROUP", '{"devs": [5]}'),
    ("GITHUB_BRANCH_PREFIX", "llm-ide"), ("GITHUB_BRANCH_PREFIX", "/llm-ide/"), ("GITHUB_BRANCH_PREFIX", ".x/"),
    ("GITHUB_BRANCH_PREFIX", "a..b/"), ("GITHUB_BRANCH_PREFIX", "x.lock/"), ("GITHUB_BRANCH_PREFIX", "a b/"),
    ("GITHUB_BRANCH_PREFIX", "a//"), ("GITHUB_BRANCH_PREFIX", "-x/"),
    ("GITHUB_PROTECTED_PATHS", "../etc/"), ("GITHUB_PROTECTED_PATHS", "/abs/"), ("GITHUB_PROTECTED_PATHS", ".github/*"),
    ("GITHUB_PROTECTED_PATH_GROUPS", "a b"), ("GITHUB_CALLS_PER_HOUR", "0"),
    ("LIMITS_BY_GROUP", '{"g": {"githubCallsPerHour": 0}}'),
])
def test_invalid_github_scope_settings_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({**BASE, name: value})


def test_storage_and_presigned_url_defaults():
    settings = load_settings(BASE)
    assert (settings.context_quota_bytes, settings.context_quota_files) == (100 * 1024 * 1024, 1000)
    assert settings.context_file_ttl_days == 90
    # A client fetches or uploads at once: a minute, not the five minutes URLs used to live.
    assert (settings.presigned_get_seconds, settings.presigned_put_seconds) == (60, 60)


def test_the_revocation_check_is_on_for_access_tokens_and_off_for_id_tokens():
    assert load_settings(BASE).revocation_check is True
    assert load_settings({**BASE, "COGNITO_REVOCATION_CHECK": "false"}).revocation_check is False
    assert load_settings({**BASE, "COGNITO_TOKEN_USE": "id"}).revocation_check is False


def test_auth_settings_required_groups_and_jwks_timeouts():
    settings = load_settings(BASE)
    assert settings.required_groups == () and settings.jwks_connect_timeout == 1.0 and settings.jwks_read_timeout == 2.0
    tuned = load_settings({**BASE, "REQUIRED_GROUPS": "ide-users, admins", "COGNITO_TOKEN_USE": "id",
                           "JWKS_CONNECT_TIMEOUT": "0.5", "JWKS_READ_TIMEOUT": "3"})
    assert tuned.required_groups == ("ide-users", "admins") and tuned.token_use == "id"
    assert (tuned.jwks_connect_timeout, tuned.jwks_read_timeout) == (0.5, 3.0)


@pytest.mark.parametrize("env, variable", [
    ({**BASE, "REQUIRED_GROUPS": "has space"}, "REQUIRED_GROUPS"),
    ({**BASE, "JWKS_CONNECT_TIMEOUT": "0"}, "JWKS_CONNECT_TIMEOUT"),
    ({**BASE, "JWKS_READ_TIMEOUT": "60"}, "JWKS_READ_TIMEOUT"),
])
def test_invalid_auth_settings_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load_settings(env)
