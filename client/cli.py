"""`llm-ide`: sign in, then use the backend from a terminal, or serve it to IDE assistants.

Settings come from flags, then environment variables, then `.dev/endpoints.json`
(written by `make dev`), so against the local stack no flag is needed.
"""
from __future__ import annotations

import argparse
import os
import sys

from client.auth import NotSignedIn, TokenFileBusy
from client.commands import account, chat, context, data, serve
from client.commands.common import CommandFailed, Context

SHARED_DEFAULTS = {"endpoints": None, "url": None, "region": None, "client_id": None, "user_pool_id": None,
                   "cognito_endpoint": None, "username": None, "token_use": "access"}


def _parser() -> argparse.ArgumentParser:
    # The shared options are accepted before or after the command.
    common = argparse.ArgumentParser(add_help=False)
    option = common.add_argument
    option("--endpoints", default=argparse.SUPPRESS,
           help="endpoints file (env LLM_IDE_ENDPOINTS; default .dev/endpoints.json)")
    option("--url", default=argparse.SUPPRESS, help="WebSocket URL (env LLM_IDE_URL)")
    option("--region", default=argparse.SUPPRESS, help="AWS region of the user pool (env LLM_IDE_REGION)")
    option("--client-id", default=argparse.SUPPRESS, help="Cognito app client id (env LLM_IDE_CLIENT_ID)")
    option("--user-pool-id", default=argparse.SUPPRESS, help="Cognito user pool id (env LLM_IDE_USER_POOL_ID)")
    option("--cognito-endpoint", default=argparse.SUPPRESS,
           help="Cognito endpoint URL (env LLM_IDE_COGNITO_ENDPOINT; the local stack's is in endpoints.json)")
    option("--username", default=argparse.SUPPRESS, help="user to sign in or act as (env LLM_IDE_USERNAME)")
    option("--token-use", choices=("access", "id"), default=argparse.SUPPRESS,
           help="which Cognito token to present (the backend's COGNITO_TOKEN_USE; default access)")
    parser = argparse.ArgumentParser(prog="llm-ide", description=__doc__, parents=[common],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (account, chat, data, context, serve):
        group.register(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name, default in SHARED_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        return args.handler(Context(args), args)
    except CommandFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except (NotSignedIn, TokenFileBusy) as exc:  # no usable sign-in (or none to be had now), wherever found out
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: a command stopped at once, not a traceback (`chat` cancels its chat itself)
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of the output went away (`| head`): stop quietly, as a shell tool does
        # Python would flush stdout again at exit and print that it failed: nothing more is written.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as the shell reports a command stopped by it


if __name__ == "__main__":
    sys.exit(main())
