"""Token lifetimes in moto's Cognito, as real Cognito sets them.

moto always issues one-hour tokens; Cognito uses the app client's `AccessTokenValidity` /
`IdTokenValidity` in its `TokenValidityUnits` (hours by default). Tests shorten them with
UpdateUserPoolClient to see the clients renew an expired token. (SRP as Cognito checks it and
`RevokeToken` are the Cognito front's: devserver/cognito_front.py.)
"""
from __future__ import annotations

from typing import Any

from moto.cognitoidp.models import CognitoIdpUserPool

UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
DEFAULT_LIFETIME = 60 * 60  # moto's, and Cognito's default
_create_jwt = CognitoIdpUserPool.create_jwt


def _create_jwt_with_client_validity(self: CognitoIdpUserPool, client_id: str, username: str, token_use: str,
                                     expires_in: int = DEFAULT_LIFETIME, extra_data: dict[str, Any] | None = None
                                     ) -> tuple[str, int]:
    client = self.clients.get(client_id)
    setting = {"access": ("AccessTokenValidity", "AccessToken"), "id": ("IdTokenValidity", "IdToken")}.get(token_use)
    if client is not None and setting and client.extended_config.get(setting[0]):
        units = (client.extended_config.get("TokenValidityUnits") or {}).get(setting[1], "hours")
        expires_in = int(client.extended_config[setting[0]]) * UNIT_SECONDS.get(units, 3600)
    return _create_jwt(self, client_id, username, token_use, expires_in, extra_data)


def install() -> None:
    CognitoIdpUserPool.create_jwt = _create_jwt_with_client_validity  # type: ignore[method-assign]
