"""Calling the app's Chalice handlers as API Gateway does, with its event shapes."""
from __future__ import annotations

import secrets
import time

import app as chalice_app
from devserver import events


def new_user(boto, provisioned, groups=()) -> str:
    """A user of their own (counters, quota and data no other test touches), signed in: an access token."""
    cognito = boto("cognito-idp")
    username, password = f"u{secrets.token_hex(6)}", f"Pw-{secrets.token_urlsafe(12)}-9a"
    cognito.admin_create_user(UserPoolId=provisioned.user_pool_id, Username=username, MessageAction="SUPPRESS")
    cognito.admin_set_user_password(UserPoolId=provisioned.user_pool_id, Username=username, Password=password,
                                    Permanent=True)
    for group in groups:
        try:
            cognito.create_group(UserPoolId=provisioned.user_pool_id, GroupName=group)
        except cognito.exceptions.GroupExistsException:
            pass
        cognito.admin_add_user_to_group(UserPoolId=provisioned.user_pool_id, Username=username, GroupName=group)
    result = cognito.initiate_auth(ClientId=provisioned.client_id, AuthFlow="USER_PASSWORD_AUTH",
                                   AuthParameters={"USERNAME": username, "PASSWORD": password})
    return result["AuthenticationResult"]["AccessToken"]


def login(boto, provisioned, index=0) -> str:
    username, password = provisioned.users[index]
    result = boto("cognito-idp").initiate_auth(ClientId=provisioned.client_id, AuthFlow="USER_PASSWORD_AUTH",
                                               AuthParameters={"USERNAME": username, "PASSWORD": password})
    return result["AuthenticationResult"]["AccessToken"]


def connect(connection_id, *, headers=None, query=None):
    event = events.connect_event(connection_id=connection_id, connected_at_ms=int(time.time() * 1000), stage="test",
                                 domain_name="abc.execute-api.us-east-1.amazonaws.com", source_ip="10.0.0.1",
                                 headers=headers or {}, query={k: [v] for k, v in (query or {}).items()})
    return chalice_app.websocket_connect(event, None)


def message(connection_id, body):
    event = events.message_event(connection_id=connection_id, connected_at_ms=0, stage="test",
                                 domain_name="abc.execute-api.us-east-1.amazonaws.com", source_ip="10.0.0.1",
                                 user_agent="t", body=body)
    return chalice_app.websocket_message(event, None)
