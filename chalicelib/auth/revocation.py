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

import json
import logging

from chalicelib.auth.errors import TokenRevoked
from chalicelib.transport import Transport, TransportError

logger = logging.getLogger(__name__)

# What Cognito answers for a token it no longer honours (GetUser's documented errors).
_REVOKED_CODES = frozenset({"NotAuthorizedException", "UserNotFoundException", "UserNotConfirmedException",
                            "PasswordResetRequiredException"})
GET_USER = "AWSCognitoIdentityProviderService.GetUser"


class RevocationCheck:
    """Asks Cognito (GetUser) whether an access token is still honoured.

    GetUser is a plain JSON POST that the token authorises (no SigV4, no IAM), so it goes
    through the app's small HTTP transport rather than boto3: the authorizers, which run it,
    never import the SDK (hundreds of milliseconds at a cold start).
    """

    def __init__(self, transport: Transport, *, endpoint: str, attempts: int = 2) -> None:
        self._transport = transport  # kept-alive connections, short timeouts: it runs inside $connect
        self._url = endpoint.rstrip("/") + "/"
        self._attempts = attempts  # a throttle or a failure of Cognito's is asked once more, then let go

    def __call__(self, access_token: str) -> None:
        """Nothing when the token is honoured, or when Cognito cannot say; TokenRevoked when it is not."""
        body = json.dumps({"AccessToken": access_token}).encode("utf-8")
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": GET_USER}
        problem = "no answer"
        for _ in range(self._attempts):
            try:
                response = self._transport.send("POST", self._url, headers=headers, body=body)
            except TransportError as error:
                problem = str(error)
                continue
            if response.status == 200:
                return
            code = _error_code(response.body)
            if response.status < 500 and code in _REVOKED_CODES:
                raise TokenRevoked("Cognito no longer honours the token", actual=code)
            problem = f"HTTP {response.status} {code}"
            if response.status < 500 and code not in ("TooManyRequestsException", "ThrottlingException"):
                break  # an answer that will not change when asked again
        logger.warning("revocation check unavailable", extra={"problem": problem})


def _error_code(body: bytes) -> str:
    """The error's name from an AWS JSON error (`__type`, maybe `namespace#Name`)."""
    try:
        kind = json.loads(body).get("__type", "")
    except (ValueError, AttributeError):
        return ""
    return str(kind).rsplit("#", 1)[-1]
