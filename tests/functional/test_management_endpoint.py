"""The Management API endpoint a connection's frames are posted to (issue 13, section 7): the setting written
from the deployed API, else the API's own execute-api host, never a custom domain mapped to the API."""
from __future__ import annotations

import time

import pytest

import app as chalice_app
from devserver import events
from tests.conftest import reset_app_caches
from tests.handler_calls import login


def connect_through(domain_name: str, stage: str, token: str, connection_id: str) -> None:
    event = events.connect_event(connection_id=connection_id, connected_at_ms=int(time.time() * 1000), stage=stage,
                                 domain_name=domain_name, source_ip="10.0.0.1",
                                 headers={"Authorization": f"Bearer {token}"}, query={})
    assert chalice_app.websocket_connect(event, None)["statusCode"] == 200


@pytest.mark.parametrize("setting, expected", [
    (None, f"https://{events.API_ID}.execute-api.us-east-1.amazonaws.com/prod"),
    ("https://k3x9q2w7ab.execute-api.us-east-1.amazonaws.com/prod",
     "https://k3x9q2w7ab.execute-api.us-east-1.amazonaws.com/prod"),
])
def test_a_custom_domain_is_never_taken_for_the_management_api(app_env, boto, table, monkeypatch, setting, expected):
    monkeypatch.delenv("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI")  # as in AWS: no emulator
    if setting:
        monkeypatch.setenv("MANAGEMENT_API_ENDPOINT", setting)
    reset_app_caches()
    # ide.example.com is mapped to the API with the path "ws": https://ide.example.com/prod is no endpoint at all.
    connect_through("ide.example.com", "prod", login(boto, app_env), "custom-domain=")
    assert table.get_item(Key={"connectionId": "custom-domain="})["Item"]["endpoint"] == expected
