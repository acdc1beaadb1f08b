"""What moto's Cognito lacks and the client relies on, as real Cognito does it.

- `RevokeToken`: revokes a refresh token (it renews nothing afterwards), as `llm-ide logout` asks.
- Token lifetimes: the app client's `AccessTokenValidity` / `IdTokenValidity` in its
  `TokenValidityUnits` (hours by default), where moto always issues one-hour tokens; tests
  shorten them with UpdateUserPoolClient to see the client renew an expired token.
"""
from __future__ import annotations

from typing import Any

from moto.cognitoidp.exceptions import NotAuthorizedError
from moto.cognitoidp.models import CognitoIdpBackend, CognitoIdpUserPool
from moto.cognitoidp.responses import CognitoIdpResponse
from moto.core.responses import ActionResult, EmptyResult

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


def _revoke_token(self: CognitoIdpBackend, token: str, client_id: str) -> None:
    for pool in self.user_pools.values():
        issued = pool.refresh_tokens.get(token)
        if issued is not None:
            if issued[0] != client_id:
                raise NotAuthorizedError("the token was not issued to this client")
            pool.refresh_tokens[token] = None  # what moto's own sign-out does: refused from now on
            return
    # Cognito answers an unknown or already revoked token with success too.


def _revoke_token_response(self: CognitoIdpResponse) -> ActionResult:
    _revoke_token(self.backend, self._get_param("Token"), self._get_param("ClientId"))
    return EmptyResult()


def install() -> None:
    CognitoIdpUserPool.create_jwt = _create_jwt_with_client_validity  # type: ignore[method-assign]
    CognitoIdpResponse.revoke_token = _revoke_token_response  # type: ignore[attr-defined]
