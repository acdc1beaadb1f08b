"""Whether Cognito still honours an access token: revoked sign-ins, disabled and deleted users.

A Cognito access token is a JWT: its signature and expiry verify offline for its whole life
(an hour), also after the user signed out everywhere (GlobalSignOut), an administrator
signed them out (AdminUserGlobalSignOut) or disabled or deleted them. Only Cognito knows
that, and it tells whoever presents the token to GetUser: it answers NotAuthorizedException
("Access Token has been revoked", "User is disabled") or UserNotFoundException. GetUser is
authorised by the token itself, not by IAM (Cognito API reference, GetUser), so no role
needs a permission for it.

One call per check, so it is made where it counts and is rare: at `$connect` (once per
connection, not per frame) and in the REST authorizer. When Cognito cannot answer
(throttled, failing, out of time) the check lets the already verified token in and logs
"revocation check unavailable": a Cognito incident must not lock every user out, and the
token's signature, expiry, issuer and client have been checked. docs/OPERATIONS.md,
"Revoked sign-ins", says what this covers and what an administrator does to cut a user off.
"""
from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.auth.errors import TokenRevoked
from chalicelib.aws.errors import error_code

logger = logging.getLogger(__name__)

# What Cognito answers for a token it no longer honours (GetUser's documented errors).
_REVOKED_CODES = frozenset({"NotAuthorizedException", "UserNotFoundException", "UserNotConfirmedException",
                            "PasswordResetRequiredException"})


class RevocationCheck:
    """Asks Cognito (GetUser) whether an access token is still honoured."""

    def __init__(self, cognito: Any) -> None:
        self._cognito = cognito  # a cognito-idp client with short timeouts: it runs inside $connect

    def __call__(self, access_token: str) -> None:
        """Nothing when the token is honoured, or when Cognito cannot say; TokenRevoked when it is not."""
        try:
            self._cognito.get_user(AccessToken=access_token)
        except ClientError as error:
            code = error_code(error)
            if code in _REVOKED_CODES:
                raise TokenRevoked("Cognito no longer honours the token", actual=code) from None
            logger.warning("revocation check unavailable", extra={"code": code})
        except BotoCoreError as error:
            logger.warning("revocation check unavailable", extra={"error": type(error).__name__})
