"""`llm-ide login`, `logout`, `whoami`: the signed-in user of an API."""
from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from client.auth import LoginFailed, NotSignedIn, Tokens, revoke, sign_in
from client.commands.common import CommandFailed, Context
from client.times import local_time


class NoAnswer(Exception):
    """Standard input ended (a script, a pipe, `< /dev/null`) where the person at the terminal was asked."""


def _ask(prompt: str, *, secret: bool = False) -> str:
    """What the person at the terminal types; NoAnswer when there is no one to ask (input at its end)."""
    try:
        return getpass.getpass(prompt) if secret else input(prompt)
    except EOFError:
        raise NoAnswer(prompt.strip().rstrip(":")) from None


class TerminalChallenges:
    """Asks the person at the terminal what Cognito asks during sign-in."""

    def new_password(self, username: str) -> str:
        print(f"Cognito asks {username} to choose a new password.")
        for _ in range(3):
            first = _ask("New password: ", secret=True)
            if first and first == _ask("New password again: ", secret=True):
                return first
            print("The two passwords differ (or are empty); again.")
        raise LoginFailed("no new password chosen")

    def mfa_code(self, username: str, challenge: str, attempt: int) -> str:
        where = "your authenticator app" if challenge == "SOFTWARE_TOKEN_MFA" else "the text message"
        if attempt > 1:
            print("That code was not accepted.")
        return _ask(f"One-time code from {where}: ")


def _claims(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified: only to show them (the backend verifies every token)."""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


def login(ctx: Context, args: argparse.Namespace) -> int:
    pool = ctx.endpoints.user_pool()
    if pool is None:
        raise CommandFailed("no Cognito app client: run `make dev`, or pass --client-id and --region", 2)
    try:
        username = args.username or os.environ.get("LLM_IDE_USERNAME") or _ask("Username: ")
        password = (os.environ.get("LLM_IDE_PASSWORD") or ctx.endpoints.dev_password(username)
                    or _ask("Password: ", secret=True))
        tokens = sign_in(username, password, pool, TerminalChallenges())
    except NoAnswer as exc:
        given = {"Username": ", or give --username (or LLM_IDE_USERNAME)", "Password": ", or set LLM_IDE_PASSWORD"}
        raise CommandFailed(f"sign-in asked for {str(exc).lower()!r}, but standard input ended; run `llm-ide login` "
                            f"on a terminal{given.get(str(exc), '')}") from None
    except LoginFailed as exc:
        raise CommandFailed(f"sign-in failed: {exc}") from None
    ctx.account.save(tokens)
    print(f"Signed in as {username} at {ctx.endpoints.websocket_url or pool.client_id}; the access token is valid"
          f" until {local_time(tokens.expires_at)} and is renewed automatically.")
    return 0


def logout(ctx: Context, args: argparse.Namespace) -> int:
    tokens = ctx.account.forget()
    if tokens is None:
        print("Not signed in here; nothing to do.")
        return 0
    pool = ctx.endpoints.user_pool()
    try:
        if pool is None:
            raise CommandFailed("no Cognito app client configured to revoke with")
        revoke(tokens, pool)
    except (ClientError, BotoCoreError, CommandFailed) as exc:
        raise CommandFailed(f"signed out here, but the refresh token could not be revoked ({exc});"
                            " it stays valid until it expires") from None
    print(f"Signed out {tokens.username}: the refresh token is revoked and the tokens are forgotten.")
    return 0


def whoami(ctx: Context, args: argparse.Namespace) -> int:
    try:
        tokens: Tokens = ctx.account.tokens()
    except NotSignedIn as exc:
        raise CommandFailed(str(exc)) from None
    claims = _claims(tokens.access_token)
    print(f"{tokens.username} (sub {claims.get('sub', '?')})")
    print(f"  API            {ctx.endpoints.websocket_url or '-'}")
    print(f"  Cognito client {ctx.endpoints.client_id or '-'}")
    print(f"  signed in      {local_time(claims['auth_time']) if 'auth_time' in claims else '-'}")
    print(f"  access token   valid until {local_time(tokens.expires_at)}")
    renewal = "renewed automatically with the refresh token" if tokens.refresh_token else "no refresh token"
    print(f"                 {renewal}")
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    commands.add_parser("login", parents=[common], help="sign in with Cognito (SRP) and keep the tokens"
                        ).set_defaults(handler=login)
    commands.add_parser("logout", parents=[common], help="revoke the refresh token and forget the tokens"
                        ).set_defaults(handler=logout)
    commands.add_parser("whoami", parents=[common], help="who is signed in where, and until when"
                        ).set_defaults(handler=whoami)
