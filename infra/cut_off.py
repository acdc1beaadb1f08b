"""Cut a user off at once: disable them, sign them out everywhere, close every connection they hold.

    python -m infra.cut_off --stage prod --username alice

In order, so that nothing slips between the steps:

1. `AdminDisableUser`: no new sign-in, no token renewal, and Cognito's GetUser refuses the
   user's tokens, so `$connect`'s revocation check (COGNITO_REVOCATION_CHECK) refuses any
   reconnect at once although the access token still verifies offline.
2. `AdminUserGlobalSignOut`: every refresh token and access token of the user is revoked.
3. The user's open connections (their list in the connections table, by the user's `sub`)
   are closed with the Management API's `DeleteConnection`, each at the endpoint it was
   opened through; API Gateway then runs `$disconnect`, and the record is removed here too
   (also when the connection was already gone). A connection whose `$connect` was already
   past its checks when this began may be recorded a moment later: the listing is repeated
   until it is empty.

The stage's user pool, connections table and region come from `.chalice/config.json` (the
values `python -m infra.sync_config` wrote) unless given; the local stack is reached with
botocore's own variables (`AWS_ENDPOINT_URL`, see docs/OPERATIONS.md, "Revoked sign-ins").
Undo with `aws cognito-idp admin-enable-user`; the user then signs in again.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.aws.errors import error_code
from chalicelib.aws.management_api import ManagementApiSender, Sender
from chalicelib.dispatch.connections import ConnectionStore
from infra import policies, resources

MAX_PASSES = 3  # listings of the user's connections, until one is empty


class CutOffError(Exception):
    """The user could not be cut off; the message says which step failed."""


@dataclass
class CutOff:
    username: str
    sub: str
    closed: list[str] = field(default_factory=list)  # connection ids closed
    failed: list[str] = field(default_factory=list)  # connection ids that could not be closed


def cut_off(username: str, *, cognito: Any, user_pool_id: str, connections: ConnectionStore,
            sender_for: Callable[[str], Sender]) -> CutOff:
    """Disable `username`, sign them out everywhere and close their connections (see the module's doc)."""
    try:
        user = cognito.admin_get_user(UserPoolId=user_pool_id, Username=username)
        cognito.admin_disable_user(UserPoolId=user_pool_id, Username=username)
        cognito.admin_user_global_sign_out(UserPoolId=user_pool_id, Username=username)
    except ClientError as error:
        raise CutOffError(f"Cognito refused ({error_code(error)}): {error}") from None
    sub = next((a["Value"] for a in user.get("UserAttributes", []) if a["Name"] == "sub"), None)
    if not sub:
        raise CutOffError(f"user {username!r} has no sub attribute")
    report = CutOff(username=user["Username"], sub=sub)
    for _ in range(MAX_PASSES):
        open_now = [c for c in connections.of_user(sub) if c.connection_id not in report.closed]
        if not open_now:
            break
        for connection in open_now:
            try:
                sender_for(connection.endpoint).close(connection.connection_id)  # a gone one is no error
            except (ClientError, BotoCoreError) as error:
                report.failed.append(connection.connection_id)
                print(f"could not close {connection.connection_id}: {error}", file=sys.stderr)
                continue
            connections.remove(connection.connection_id)
            report.closed.append(connection.connection_id)
        if report.failed:
            break
    return report


def _stage_settings(stage: str, chalice_dir: Path) -> dict[str, str]:
    try:
        config = json.loads((chalice_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return dict(config.get("stages", {}).get(stage, {}).get("environment_variables", {}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--username", required=True, help="the Cognito username (or an alias: email)")
    parser.add_argument("--user-pool-id", help="default: the stage's COGNITO_USER_POOL_ID in .chalice/config.json")
    parser.add_argument("--connections-table", help="default: the stage's CONNECTIONS_TABLE, else its usual name")
    parser.add_argument("--region", help="default: the user pool's region")
    parser.add_argument("--chalice-dir", type=Path, default=policies.CHALICE_DIR)
    args = parser.parse_args(argv)
    env = _stage_settings(args.stage, args.chalice_dir)
    pool_id = args.user_pool_id or env.get("COGNITO_USER_POOL_ID")
    if not pool_id:
        print(f"cut_off: no user pool for stage {args.stage!r}: pass --user-pool-id", file=sys.stderr)
        return 2
    region = args.region or pool_id.split("_", 1)[0]
    table_name = (args.connections_table or env.get("CONNECTIONS_TABLE")
                  or resources.table("connections").physical_name(args.stage))
    session = boto3.session.Session(region_name=region)
    # Only listed and removed here: the store's limits of new connections and frames do not apply.
    connections = ConnectionStore(session.resource("dynamodb").Table(table_name), ttl_seconds=0, max_per_user=0,
                                  frame_window_seconds=1)

    def sender_for(endpoint: str) -> Sender:
        return ManagementApiSender(session.client("apigatewaymanagementapi", endpoint_url=endpoint))

    try:
        report = cut_off(args.username, cognito=session.client("cognito-idp"), user_pool_id=pool_id,
                         connections=connections, sender_for=sender_for)
    except (CutOffError, ClientError, BotoCoreError) as error:
        print(f"cut_off: {error}", file=sys.stderr)
        return 1
    print(f"{report.username} (sub {report.sub}): disabled, signed out everywhere, "
          f"{len(report.closed)} connection(s) closed"
          + (f", {len(report.failed)} could not be closed: run this again" if report.failed else ""))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
