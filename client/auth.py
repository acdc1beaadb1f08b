"""Signing in with Cognito and keeping the tokens for later commands."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError


class LoginFailed(Exception):
    pass


@dataclass(frozen=True)
class Tokens:
    username: str
    access_token: str
    id_token: str
    refresh_token: str | None
    expires_at: int

    def token(self, token_use: str = "access") -> str:
        return self.access_token if token_use == "access" else self.id_token

    def expired(self, margin: int = 30) -> bool:
        return time.time() + margin >= self.expires_at


def login(username: str, password: str, *, client_id: str, region: str,
          endpoint_url: str | None = None) -> Tokens:
    """Cognito InitiateAuth with USER_PASSWORD_AUTH, exactly as against real Cognito."""
    cognito = boto3.client("cognito-idp", region_name=region, endpoint_url=endpoint_url,
                           config=Config(signature_version=UNSIGNED, connect_timeout=5, read_timeout=10,
                                         retries={"mode": "standard", "max_attempts": 3}))
    try:
        response = cognito.initiate_auth(ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH",
                                         AuthParameters={"USERNAME": username, "PASSWORD": password})
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise LoginFailed(f"{error.get('Code', 'error')}: {error.get('Message', '')}") from None
    if "AuthenticationResult" not in response:
        raise LoginFailed(f"Cognito asks for a challenge this client does not answer: {response.get('ChallengeName')}")
    result = response["AuthenticationResult"]
    return Tokens(username=username, access_token=result["AccessToken"], id_token=result["IdToken"],
                  refresh_token=result.get("RefreshToken"), expires_at=int(time.time()) + int(result["ExpiresIn"]))


class TokenStore:
    """Tokens per API and user in one file readable only by its owner.

    A sign-in is kept under every name it is known by (the API's URL, the Cognito app client).
    A token is only ever offered to an API it was saved for: never "the latest" to any URL,
    which could hand a token to a server that is not the one it was meant for.
    """

    def __init__(self, path: Path | None = None) -> None:
        home = Path(os.environ.get("LLM_IDE_HOME", Path.home() / ".llm-ide"))
        self.path = path or home / "tokens.json"

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def save(self, apis: str | list[str | None], tokens: Tokens) -> None:
        data = self._read()
        for api in [a for a in ([apis] if isinstance(apis, str) else apis) if a]:
            data.setdefault(api, {})["current"] = tokens.username
            data[api].setdefault("users", {})[tokens.username] = asdict(tokens)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
        tmp.replace(self.path)

    def load(self, apis: str | list[str | None], username: str | None = None) -> Tokens | None:
        """The first sign-in found under these names (for `username`, if given)."""
        data = self._read()
        for api in [a for a in ([apis] if isinstance(apis, str) else apis) if a]:
            entry = data.get(api, {})
            stored = entry.get("users", {}).get(username or entry.get("current") or "")
            if stored:
                return Tokens(**stored)
        return None
