"""The Python client of the LLM IDE backend: library and `python -m client`."""
from client.auth import LoginFailed, Tokens, TokenStore, login
from client.connection import ClientClosed, ConnectionRefused, IdeClient, UploadFailed
from client.endpoints import Endpoints, EndpointsNotFound, load_endpoints

__all__ = ["ClientClosed", "ConnectionRefused", "Endpoints", "EndpointsNotFound", "IdeClient", "LoginFailed",
           "TokenStore", "Tokens", "UploadFailed", "load_endpoints", "login"]
