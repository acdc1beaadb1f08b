"""The github_worker's one job type: built by the `github.*` action, parsed by the worker.

The worker checks the event again (`from_event`), since anything allowed to invoke
the function could have sent it: a job that names no connection to answer is
dropped (logged), any other defect is answered with the error it carries.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import AppError, BadRequest
from chalicelib.github import params as github_params
from chalicelib.protocol import Params, is_request_id


@dataclass(frozen=True)
class ReplyTo:
    """Where the answer goes: the client's connection, through its Management API endpoint."""

    connection_id: str
    endpoint: str
    request_id: str | None  # the client's `id` of the github.* frame


class InvalidJob(Exception):
    """An event that is not a valid job; `reply_to` is None when no client can be told."""

    def __init__(self, error: AppError, reply_to: ReplyTo | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.reply_to = reply_to


@dataclass(frozen=True)
class GitHubJob:
    reply_to: ReplyTo
    action: str  # one of github_params.ACTIONS
    params: dict[str, Any]  # as github_params.validate returns them
    user_sub: str
    username: str
    groups: tuple[str, ...]

    def to_event(self) -> dict[str, Any]:
        return {"connectionId": self.reply_to.connection_id, "endpoint": self.reply_to.endpoint,
                "requestId": self.reply_to.request_id, "action": self.action, "params": self.params,
                "user": {"sub": self.user_sub, "username": self.username, "groups": list(self.groups)}}

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> GitHubJob:
        """The job, checked as the action checked it; InvalidJob otherwise."""
        connection_id, endpoint = event.get("connectionId"), event.get("endpoint")
        if not isinstance(connection_id, str) or not isinstance(endpoint, str):
            raise InvalidJob(BadRequest("the job names no connection"), None)
        request_id = event.get("requestId")
        reply_to = ReplyTo(connection_id, endpoint, request_id if is_request_id(request_id) else None)
        user = event.get("user")
        user = user if isinstance(user, dict) else {}
        sub, username, groups = user.get("sub"), user.get("username"), user.get("groups")
        # A username is one printable word (Cognito allows no spaces), as the attribution trailer needs it.
        if not isinstance(sub, str) or not sub or not isinstance(username, str) or not username \
                or not username.isprintable() or " " in username \
                or not isinstance(groups, list) or not all(isinstance(group, str) for group in groups):
            raise InvalidJob(BadRequest("the request names no verified user"), reply_to)
        action = event.get("action")
        if action not in github_params.ACTIONS:
            raise InvalidJob(BadRequest("unknown GitHub action"), reply_to)
        raw = event.get("params")
        try:
            checked = github_params.validate(action, Params(raw if isinstance(raw, dict) else {}))
        except AppError as error:
            raise InvalidJob(error, reply_to) from None
        return cls(reply_to=reply_to, action=action, params=checked, user_sub=sub, username=username,
                   groups=tuple(groups))
