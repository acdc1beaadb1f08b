"""Cognito in front of moto: the SRP sign-in checked as Cognito checks it, and RevokeToken.

moto answers `USER_SRP_AUTH` with a random `SRP_B` and accepts any `PASSWORD_CLAIM_SIGNATURE`,
so a browser's SRP sign-in would succeed with any password; its `USER_ID_FOR_SRP` is an id that
its own `RespondToAuthChallenge` cannot look up; its `NEW_PASSWORD_REQUIRED` challenge lacks the
`userAttributes` and `requiredAttributes` that Cognito's client libraries read; and it has no
`RevokeToken`. This front does those as Cognito does and passes every other call to moto untouched:

- `InitiateAuth` `USER_SRP_AUTH`: moto opens the auth session (user known, enabled, confirmed);
  the front answers `PASSWORD_VERIFIER` with its own salt and `SRP_B` (SRP-6a over the 3072-bit
  group, as Cognito and its client libraries compute it) and `USER_ID_FOR_SRP` the username.
- `RespondToAuthChallenge` `PASSWORD_VERIFIER`: the signature is checked against the user's
  password; a wrong one is `NotAuthorizedException` ("Incorrect username or password."), and a
  right one goes on to moto with moto's session.
- `NEW_PASSWORD_REQUIRED` (after the password check): with `userAttributes` `{}` and
  `requiredAttributes` `[]` (JSON texts), as Cognito sends them.
- `RevokeToken`: the refresh token is refused from then on (`InitiateAuth` `REFRESH_TOKEN_AUTH`
  answers `NotAuthorizedException`, "Refresh Token has been revoked").

The front knows a password when it was set through it: the stack's own users, and
`AdminCreateUser` (temporary), `AdminSetUserPassword`, `ChangePassword` and a
`NEW_PASSWORD_REQUIRED` answer sent here (Cognito keeps a verifier; the emulator keeps the
password). The page and the tests reach Cognito at `cognito.endpointUrl`, which is this front.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

log = logging.getLogger("devserver.cognito")

TARGET_PREFIX = "AWSCognitoIdentityProviderService."
# RFC 5054's 3072-bit group, g = 2: the one Cognito's SRP uses.
N = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200C"
    "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF", 16)
G = 2
_HEADERS = {"Content-Type": "application/x-amz-json-1.1", "Access-Control-Allow-Origin": "*"}


def pad_hex(value: int) -> str:
    """Cognito's padHex: even-length hex, with "00" before a leading nibble >= 8 (a positive number)."""
    text = format(value, "x")
    text = "0" + text if len(text) % 2 else text
    return "00" + text if text[0] in "89abcdef" else text


def _hex_hash(hex_text: str) -> str:
    return hashlib.sha256(bytes.fromhex(hex_text)).hexdigest()


K = int(_hex_hash(pad_hex(N) + pad_hex(G)), 16)


def password_x(pool_name: str, username: str, password: str, salt: int) -> int:
    inner = hashlib.sha256(f"{pool_name}{username}:{password}".encode()).hexdigest()
    return int(_hex_hash(pad_hex(salt) + inner), 16)


@dataclass
class SrpChallenge:
    """One PASSWORD_VERIFIER challenge the front issued: what it needs to check the answer."""

    pool_id: str
    username: str
    salt: int
    b: int
    big_b: int
    big_a: int
    moto_session: str


def new_challenge(*, pool_id: str, username: str, password: str, big_a: int, moto_session: str) -> SrpChallenge:
    if big_a % N == 0:
        raise ValueError("SRP_A must not be zero mod N")
    salt = int.from_bytes(secrets.token_bytes(16), "big")
    v = pow(G, password_x(pool_id.split("_", 1)[1], username, password, salt), N)
    b = int.from_bytes(secrets.token_bytes(128), "big") % N
    big_b = (K * v + pow(G, b, N)) % N
    return SrpChallenge(pool_id=pool_id, username=username, salt=salt, b=b, big_b=big_b, big_a=big_a,
                        moto_session=moto_session)


def expected_signature(challenge: SrpChallenge, password: str, secret_block: str, timestamp: str) -> str:
    """The PASSWORD_CLAIM_SIGNATURE a client that knows `password` sends (base64 HMAC-SHA256)."""
    pool_name = challenge.pool_id.split("_", 1)[1]
    u = int(_hex_hash(pad_hex(challenge.big_a) + pad_hex(challenge.big_b)), 16)
    if u == 0:
        raise ValueError("u is zero")
    v = pow(G, password_x(pool_name, challenge.username, password, challenge.salt), N)
    s = pow(challenge.big_a * pow(v, u, N), challenge.b, N)
    prk = hmac.new(bytes.fromhex(pad_hex(u)), bytes.fromhex(pad_hex(s)), hashlib.sha256).digest()
    key = hmac.new(prk, b"Caldera Derived Key\x01", hashlib.sha256).digest()[:16]
    message = (pool_name.encode() + challenge.username.encode() + base64.b64decode(secret_block)
               + timestamp.encode())
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


class CognitoFront:
    def __init__(self, moto_url: str, *, passwords: Mapping[tuple[str, str], str]) -> None:
        """`passwords`: (user pool id, username) -> password, for users made before the front."""
        self._moto_url = moto_url
        self._passwords: dict[tuple[str, str], str] = dict(passwords)
        self._challenges: dict[str, SrpChallenge] = {}  # SECRET_BLOCK -> challenge
        self._revoked: set[str] = set()
        self._pools_of_clients: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_cleanup.append(self._close)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        operation = request.headers.get("X-Amz-Target", "").removeprefix(TARGET_PREFIX)
        body = await request.read()
        if request.method != "POST" or not operation:
            return await self._forward(request, body)
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            return await self._forward(request, body)
        handler = {"InitiateAuth": self._initiate_auth, "RespondToAuthChallenge": self._respond,
                   "RevokeToken": self._revoke}.get(operation)
        if handler is not None:
            return await handler(request, body, params)
        response, status, _ = await self._call(request, body)
        if status == 200:
            self._learn_password(operation, params)
        return response

    # --- the calls moto gets wrong ------------------------------------------

    async def _initiate_auth(self, request: web.Request, body: bytes, params: dict[str, Any]) -> web.StreamResponse:
        flow, auth = params.get("AuthFlow"), params.get("AuthParameters") or {}
        if flow in ("REFRESH_TOKEN_AUTH", "REFRESH_TOKEN") and auth.get("REFRESH_TOKEN") in self._revoked:
            return _error(400, "NotAuthorizedException", "Refresh Token has been revoked")
        if flow != "USER_SRP_AUTH":
            return (await self._call(request, body))[0]
        response, status, answer = await self._call(request, body)
        if status != 200 or answer.get("ChallengeName") != "PASSWORD_VERIFIER":
            return response
        username = answer["ChallengeParameters"]["USERNAME"]
        pool_id = await self._pool_of(params.get("ClientId", ""))
        password = self._passwords.get((pool_id, username))
        if password is None:
            return _error(400, "NotAuthorizedException",
                          "the local Cognito front does not know this user's password: set it through the front")
        try:
            challenge = new_challenge(pool_id=pool_id, username=username, password=password,
                                      big_a=int(auth.get("SRP_A", ""), 16), moto_session=answer["Session"])
        except ValueError:
            return _error(400, "InvalidParameterException", "SRP_A is not a valid SRP value")
        secret_block = base64.b64encode(secrets.token_bytes(64)).decode()
        self._challenges[secret_block] = challenge
        return _json({"ChallengeName": "PASSWORD_VERIFIER", "Session": answer["Session"],
                      "ChallengeParameters": {
                          "SALT": format(challenge.salt, "x"), "SRP_B": format(challenge.big_b, "x"),
                          "USERNAME": username, "USER_ID_FOR_SRP": username, "SECRET_BLOCK": secret_block}})

    async def _respond(self, request: web.Request, body: bytes, params: dict[str, Any]) -> web.StreamResponse:
        answers = params.get("ChallengeResponses") or {}
        if params.get("ChallengeName") == "PASSWORD_VERIFIER":
            challenge = self._challenges.pop(answers.get("PASSWORD_CLAIM_SECRET_BLOCK", ""), None)
            if challenge is None or answers.get("USERNAME") != challenge.username:
                return _error(400, "NotAuthorizedException", "Invalid session for the user.")
            password = self._passwords[(challenge.pool_id, challenge.username)]
            try:
                expected = expected_signature(challenge, password, answers["PASSWORD_CLAIM_SECRET_BLOCK"],
                                              answers.get("TIMESTAMP", ""))
            except ValueError:
                expected = ""
            if not hmac.compare_digest(expected, str(answers.get("PASSWORD_CLAIM_SIGNATURE", ""))):
                log.info("SRP sign-in refused for %s: wrong password", challenge.username)
                return _error(400, "NotAuthorizedException", "Incorrect username or password.")
            # moto keys its auth session by its own secret block, the session id it issued.
            body = json.dumps({**params, "ChallengeResponses": {
                **answers, "PASSWORD_CLAIM_SECRET_BLOCK": challenge.moto_session}}).encode()
        response, status, answer = await self._call(request, body)
        if answer.get("ChallengeName") == "NEW_PASSWORD_REQUIRED":
            response = _with_new_password_parameters(answer)
        if status == 200 and params.get("ChallengeName") == "NEW_PASSWORD_REQUIRED":
            pool_id = await self._pool_of(params.get("ClientId", ""))
            self._passwords[(pool_id, answers.get("USERNAME", ""))] = answers.get("NEW_PASSWORD", "")
        return response

    async def _revoke(self, request: web.Request, body: bytes, params: dict[str, Any]) -> web.StreamResponse:
        token, client_id = params.get("Token"), params.get("ClientId")
        if not isinstance(token, str) or not token or not isinstance(client_id, str) or not client_id:
            return _error(400, "InvalidParameterException", "Token and ClientId are required")
        await self._pool_of(client_id)  # an unknown client is refused, as Cognito does
        self._revoked.add(token)
        return _json({})

    # --- passing through ------------------------------------------------------

    def _learn_password(self, operation: str, params: dict[str, Any]) -> None:
        pool_id, username = params.get("UserPoolId", ""), params.get("Username", "")
        if operation == "AdminCreateUser" and params.get("TemporaryPassword"):
            self._passwords[(pool_id, username)] = params["TemporaryPassword"]
        elif operation == "AdminSetUserPassword":
            self._passwords[(pool_id, username)] = params.get("Password", "")
        elif operation == "ChangePassword":
            for key, password in list(self._passwords.items()):
                if password == params.get("PreviousPassword"):
                    self._passwords[key] = params.get("ProposedPassword", "")

    async def _pool_of(self, client_id: str) -> str:
        if client_id not in self._pools_of_clients:
            async with self._client().post(self._moto_url + "/", data=json.dumps({"MaxResults": 60}), headers={
                    "X-Amz-Target": TARGET_PREFIX + "ListUserPools",
                    "Content-Type": "application/x-amz-json-1.1"}) as listed:
                pools = (await listed.json(content_type=None)).get("UserPools", [])
            for pool in pools:
                async with self._client().post(self._moto_url + "/", data=json.dumps(
                        {"UserPoolId": pool["Id"], "MaxResults": 60}), headers={
                        "X-Amz-Target": TARGET_PREFIX + "ListUserPoolClients",
                        "Content-Type": "application/x-amz-json-1.1"}) as clients:
                    for client in (await clients.json(content_type=None)).get("UserPoolClients", []):
                        self._pools_of_clients[client["ClientId"]] = pool["Id"]
        return self._pools_of_clients.get(client_id, "")

    async def _call(self, request: web.Request, body: bytes) -> tuple[web.Response, int, dict[str, Any]]:
        response = await self._forward(request, body)
        payload = response.body
        try:
            answer = json.loads(payload) if response.status == 200 and isinstance(payload, bytes) and payload else {}
        except ValueError:
            answer = {}
        return response, response.status, answer

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._client().request(request.method, self._moto_url + request.raw_path, headers=headers,
                                          data=body or None, allow_redirects=False) as upstream:
            payload = await upstream.read()
            out = {k: v for k, v in upstream.headers.items()
                   if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")}
        return web.Response(status=upstream.status, headers=out, body=payload)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _close(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()


def _with_new_password_parameters(answer: dict[str, Any]) -> web.Response:
    """moto's NEW_PASSWORD_REQUIRED without the two parameters Cognito always sends (JSON texts)."""
    parameters = {"userAttributes": "{}", "requiredAttributes": "[]", **answer.get("ChallengeParameters", {})}
    return _json({**answer, "ChallengeParameters": parameters})


def _json(document: dict[str, Any], *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A Cognito JSON answer (application/x-amz-json-1.1, readable from any origin, as moto's are)."""
    return web.Response(status=status, body=json.dumps(document).encode(), headers={**_HEADERS, **(headers or {})})


def _error(status: int, error_type: str, message: str) -> web.Response:
    return _json({"__type": error_type, "message": message}, status=status, headers={"x-amzn-ErrorType": error_type})
