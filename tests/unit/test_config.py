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


def test_management_endpoint_from_event_unless_overridden():
    settings = load_settings(BASE)
    assert settings.management_endpoint("abc.execute-api.eu-west-1.amazonaws.com", "prod") == \
        "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
    local = load_settings({**BASE, "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": "http://127.0.0.1:8000/local"})
    assert local.management_endpoint("ignored", "prod") == "http://127.0.0.1:8000/local"


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
