"""What every command shares: the resolved endpoints, the signed-in user, a connection, errors."""
from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from websockets.exceptions import InvalidHandshake, InvalidURI
from websockets.uri import parse_uri

from client.auth import NotSignedIn, SignedIn, TokenStore
from client.connection import ClientClosed, ConnectionRefused, IdeClient, Reconnect
from client.endpoints import Endpoints, EndpointsNotFound, no_websocket_url, resolve_endpoints


class CommandFailed(Exception):
    """Ends a command with `error: <message>` on stderr and exit status `status`."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def error_text(error: dict[str, Any]) -> str:
    """An `error` frame's error as `CODE: message`, with its `retryAfter` unless the message already says it
    (the backend's limits say `retry in 42 s` themselves)."""
    message = str(error.get("message"))
    retry_after = error.get("retryAfter")
    retry = f" (retry after {retry_after} s)" if retry_after is not None and f" {retry_after} s" not in message else ""
    return f"{error.get('code')}: {message}{retry}"


class ProtocolError(CommandFailed):
    """The backend answered an `error` frame."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error_text(error))
        self.code = error.get("code")


class Context:
    """One command's view of the backend: settings resolved once, tokens renewed as needed."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        try:
            self.endpoints: Endpoints = resolve_endpoints(
                args.endpoints, websocket_url=args.url, region=args.region, client_id=args.client_id,
                user_pool_id=args.user_pool_id, cognito_endpoint=args.cognito_endpoint)
        except EndpointsNotFound as exc:
            raise CommandFailed(str(exc), 2) from None
        self.account = SignedIn(TokenStore(), self.endpoints.api_names, self.endpoints.user_pool(), args.username)

    def token(self, *, force_refresh: bool = False) -> str:
        try:
            return self.account.tokens(force_refresh=force_refresh).token(self.args.token_use)
        except NotSignedIn as exc:
            raise CommandFailed(str(exc)) from None

    def connect(self, *, reconnect: bool = False) -> IdeClient:
        """A connection with a fresh token; a refused handshake is retried once with a renewed one.

        With `reconnect`, the connection stays up by itself (keep-alive, a renewed token before the
        old one expires, reconnecting and resuming running chats: client/connection.py).
        """
        url = self.endpoints.websocket_url
        if not url:
            raise CommandFailed(no_websocket_url(self.args.endpoints), 2)
        try:
            parse_uri(url)  # before the token is looked up: a wrong URL is named, not taken for a missing sign-in
        except InvalidURI:
            raise CommandFailed(f"{url} is not a WebSocket URL (ws://... or wss://...)", 2) from None
        try:
            if reconnect:
                return IdeClient(url, reconnect=Reconnect(self.account.token_source(self.args.token_use)))
            for force_refresh in (False, True):
                try:
                    return IdeClient(url, self.token(force_refresh=force_refresh))
                except ConnectionRefused as exc:
                    if exc.status != 401 or force_refresh:
                        raise
        except ConnectionRefused as exc:
            raise CommandFailed(f"{url}: {exc}") from None
        except InvalidHandshake as exc:  # something answered, but not as a WebSocket server
            raise CommandFailed(f"{url} did not answer as a WebSocket server ({exc})") from None
        except NotSignedIn as exc:
            raise CommandFailed(str(exc)) from None
        except OSError as exc:
            raise CommandFailed(f"cannot reach the backend at {url}: {exc}") from None
        raise AssertionError("unreachable")

    def request(self, client: IdeClient, action: str, *, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        """The `data` of the action's `result`; an `error` frame raises ProtocolError, no answer CommandFailed."""
        try:
            frame = client.request(action, timeout=timeout, **{k: v for k, v in params.items() if v is not None})
        except TimeoutError:
            raise CommandFailed(f"the backend did not answer {action} within {timeout:g} s") from None
        except ClientClosed:
            raise CommandFailed(f"the connection closed before the backend answered {action}") from None
        if frame.get("type") == "error":
            raise ProtocolError(frame.get("error", {}))
        if frame.get("type") != "result":
            raise CommandFailed(f"unexpected answer to {action}: {frame.get('type')}")
        return frame["data"]

    def print_json(self, data: Any) -> None:
        json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")


# What a terminal would act on rather than show: C0 controls but tab and line feed, DEL, and C1 controls.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """`text` as it may go to standard output: to a terminal with every control character written as an escape
    (`\\x1b`), since a model's reply (or what it echoes of a file) could hold a sequence that moves the cursor,
    retitles the window or sets the clipboard; to a file or a pipe, byte for byte."""
    if not sys.stdout.isatty():
        return text
    return _CONTROLS.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Left-aligned columns, as wide as their widest cell."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [headers, *rows]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                     for line in lines)
