"""The one table of actions: every action the protocol names, how it is admitted, and what serves it.

Only this module imports the features' actions. Each entry builds its action from
the composition root's collaborators when the action is first dispatched, so a
frame pays only for the feature it uses.

Every action but `ping` counts against the user's request limit: the dispatch
admits it before it runs (Admission.REQUEST), except `chat.send`, which admits
itself (Admission.SELF): its request and its token reservation are one write
(TokenBudget.reserve).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from chalicelib import protocol
from chalicelib.chat.actions import ChatActions, ModelActions
from chalicelib.chat.request import ChatPolicy
from chalicelib.chat.requests import new_request_id
from chalicelib.chat.resume import ResumeActions
from chalicelib.chat.uploads import UploadActions
from chalicelib.context.actions import ContextActions
from chalicelib.dispatch.contract import Action, ActionContext, ActionEntry, Admission
from chalicelib.github.actions import GitHubActions
from chalicelib.github.scope import GitHubScope
from chalicelib.limits.actions import UsageActions
from chalicelib.sessions.actions import SessionActions

if TYPE_CHECKING:
    from chalicelib.root import Root


def ping(ctx: ActionContext) -> dict[str, Any]:
    return protocol.pong(ctx.frame.id)


def _chat(root: Root) -> ChatActions:
    settings = root.settings
    return ChatActions(policy=ChatPolicy.from_settings(settings), rate_limiter=root.rate_limiter,
                       budget=root.token_budget, requests=root.requests, history=root.sessions,
                       context=root.context, invoker=root.invoker, worker_function=settings.bedrock_worker_function,
                       uploads=lambda: root.uploads, counter=root.input_counter)


def _github(root: Root) -> GitHubActions:
    settings = root.settings
    return GitHubActions(invoker=root.invoker, worker_function=settings.github_worker_function,
                         scope=GitHubScope.from_settings(settings))


_REQUEST, _SELF = Admission.REQUEST, Admission.SELF

TABLE: Mapping[str, tuple[Admission, Callable[[Root], Action]]] = {
    "ping": (Admission.NONE, lambda root: ping),
    "usage.get": (_REQUEST, lambda root: UsageActions(root.usage).get),
    "github.repos": (_REQUEST, lambda root: _github(root).hand_over),
    "github.tree": (_REQUEST, lambda root: _github(root).hand_over),
    "github.file": (_REQUEST, lambda root: _github(root).hand_over),
    "github.pr": (_REQUEST, lambda root: _github(root).hand_over),
    "session.create": (_REQUEST, lambda root: SessionActions(root.sessions).create),
    "session.list": (_REQUEST, lambda root: SessionActions(root.sessions).list_page),
    "session.get": (_REQUEST, lambda root: SessionActions(root.sessions).get),
    "session.update": (_REQUEST, lambda root: SessionActions(root.sessions).update),
    "session.delete": (_REQUEST, lambda root: SessionActions(root.sessions).delete),
    "context.put": (_REQUEST, lambda root: ContextActions(root.context).put),
    "context.uploadUrl": (_REQUEST, lambda root: ContextActions(root.context).upload_url),
    "context.list": (_REQUEST, lambda root: ContextActions(root.context).list_page),
    "context.get": (_REQUEST, lambda root: ContextActions(root.context).get),
    "context.delete": (_REQUEST, lambda root: ContextActions(root.context).delete),
    "chat.send": (_SELF, lambda root: _chat(root).send),
    "chat.cancel": (_REQUEST, lambda root: _chat(root).cancel),
    "chat.countTokens": (_REQUEST, lambda root: _chat(root).count_tokens),
    "chat.resume": (_REQUEST, lambda root: ResumeActions(requests=root.requests, frames=root.frame_log).resume),
    "models.list": (_REQUEST, lambda root: ModelActions(root.settings.models).list_models),
    "chat.upload": (_REQUEST, lambda root: UploadActions(root.uploads, new_id=new_request_id).upload),
}


class ActionTable:
    """The table bound to a composition root: `lookup(name)` is the action's entry, or None."""

    def __init__(self, root: Root, table: Mapping[str, tuple[Admission, Callable[[Root], Action]]] = TABLE) -> None:
        self._root = root
        self._table = table

    def lookup(self, name: str) -> ActionEntry | None:
        found = self._table.get(name)
        if found is None:
            return None
        admission, build = found
        return ActionEntry(admission=admission, action=build(self._root))
