"""The Python client of the LLM IDE backend: the library, the `llm-ide` command and its IDE bridge."""
from client.auth import LoginFailed, NotSignedIn, SignedIn, Tokens, TokenStore, UserPool, login, sign_in
from client.connection import ClientClosed, ConnectionRefused, IdeClient, Reconnect, UploadFailed
from client.endpoints import Endpoints, EndpointsNotFound, load_endpoints, resolve_endpoints

__all__ = ["ClientClosed", "ConnectionRefused", "Endpoints", "EndpointsNotFound", "IdeClient", "LoginFailed",
           "NotSignedIn", "Reconnect", "SignedIn", "TokenStore", "Tokens", "UploadFailed", "UserPool",
           "load_endpoints", "login", "resolve_endpoints", "sign_in"]
