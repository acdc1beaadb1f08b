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
