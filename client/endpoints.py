"""Where the backend is: `.dev/endpoints.json` from `make dev`, or values for a deployed stage."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path


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

    def override(self, **values: str | None) -> "Endpoints":
        return replace(self, **{k: v for k, v in values.items() if v})

    def dev_password(self, username: str) -> str | None:
        return self.users.get(username)


def load_endpoints(path: str | Path | None = None) -> Endpoints:
    path = Path(path or os.environ.get("LLM_IDE_ENDPOINTS") or Path.cwd() / ".dev" / "endpoints.json")
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
