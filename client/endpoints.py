"""Where the backend is: flags, then environment variables, then `.dev/endpoints.json` from `make dev`."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from client.auth import UserPool

# Each setting's environment variable (the flags of the same names come first).
ENVIRONMENT = {
    "websocket_url": "LLM_IDE_URL",
    "region": "LLM_IDE_REGION",
    "client_id": "LLM_IDE_CLIENT_ID",
    "user_pool_id": "LLM_IDE_USER_POOL_ID",
    "cognito_endpoint": "LLM_IDE_COGNITO_ENDPOINT",
}


class EndpointsNotFound(Exception):
    pass


@dataclass(frozen=True)
class Endpoints:
    websocket_url: str | None = None
    http_url: str | None = None
    region: str | None = None
    client_id: str | None = None
    user_pool_id: str | None = None
    cognito_endpoint: str | None = None  # None: the real Cognito of `region`
    users: dict[str, str] = field(default_factory=dict)  # the local stack's users and passwords

    def override(self, **values: str | None) -> Endpoints:
        given: dict[str, Any] = {k: v for k, v in values.items() if v}
        return replace(self, **given)

    def dev_password(self, username: str) -> str | None:
        return self.users.get(username)

    def user_pool(self) -> UserPool | None:
        """The Cognito app client to sign in and renew with; None when it is not configured."""
        if not self.client_id or not self.region:
            return None
        return UserPool(client_id=self.client_id, region=self.region, user_pool_id=self.user_pool_id,
                        endpoint_url=self.cognito_endpoint)

    @property
    def api_names(self) -> list[str | None]:
        """The names a sign-in is kept under (see TokenStore)."""
        return [self.websocket_url, self.client_id]


def endpoints_path(path: str | Path | None = None) -> Path:
    """The endpoints file: the one named, else LLM_IDE_ENDPOINTS, else `.dev/endpoints.json` here."""
    return Path(path or os.environ.get("LLM_IDE_ENDPOINTS") or Path.cwd() / ".dev" / "endpoints.json")


def no_websocket_url(path: str | Path | None = None) -> str:
    """Why there is no WebSocket URL, and what to do: the usual causes are a command run outside the clone,
    and a local stack that is not running (it removes the file when it stops)."""
    file = endpoints_path(path)
    if file.exists():
        why = f"{file} names none"
    elif file.parent.is_dir():  # a stack ran here (its state directory is there), and is not running now
        why = (f"no {file}: is `make dev` running? (its stack writes the file once it is ready, and removes it "
               "when it stops)")
    else:
        why = f"no {file} (`make dev` writes it in its clone)"
    return (f"no WebSocket URL: {why}; run this command in the clone where `make dev` runs, or point "
            "--endpoints (or LLM_IDE_ENDPOINTS) at its .dev/endpoints.json, or pass --url (or set LLM_IDE_URL)")


def load_endpoints(path: str | Path | None = None) -> Endpoints:
    path = endpoints_path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise EndpointsNotFound(f"{path} not found: is `make dev` running?") from None
    cognito = doc.get("cognito", {})
    return Endpoints(
        websocket_url=doc.get("websocketUrl"),
        http_url=doc.get("httpUrl"),
        region=doc.get("region"),
        client_id=cognito.get("clientId"),
        user_pool_id=cognito.get("userPoolId"),
        cognito_endpoint=cognito.get("endpointUrl"),
        users={u["username"]: u["password"] for u in doc.get("users", [])},
    )


def resolve_endpoints(path: str | Path | None = None, **flags: str | None) -> Endpoints:
    """Flags (`websocket_url=`, `region=`, ... as in ENVIRONMENT) over the environment over the file."""
    try:
        base = load_endpoints(path)
    except EndpointsNotFound:
        if path:  # named explicitly: its absence is an error, not a fallback
            raise
        base = Endpoints()
    return base.override(**{name: flags.get(name) or os.environ.get(variable)
                            for name, variable in ENVIRONMENT.items()})
