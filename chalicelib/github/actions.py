"""The github.* actions: parameters and scope checked here, the GitHub calls in the github_worker."""
from __future__ import annotations

from chalicelib.aws.lambda_invoke import WorkerInvoker
from chalicelib.dispatch.contract import ActionContext
from chalicelib.github import params as github_params
from chalicelib.github.job import GitHubJob, ReplyTo
from chalicelib.github.scope import GitHubScope


class GitHubActions:
    def __init__(self, *, invoker: WorkerInvoker, worker_function: str, scope: GitHubScope) -> None:
        self._invoker = invoker
        self._worker_function = worker_function
        self._scope = scope

    def hand_over(self, ctx: ActionContext) -> None:
        """Refuse what the worker would refuse, then start it: it answers the client itself."""
        connection = ctx.connection
        self._scope.admit(connection.groups)  # before the parameters: an outsider learns nothing of them
        checked = github_params.validate(ctx.frame.action, ctx.frame.params)
        scoped = self._scope.authorize(ctx.frame.action, checked, connection.groups)
        job = GitHubJob(reply_to=ReplyTo(connection.connection_id, connection.endpoint, ctx.frame.id),
                        action=ctx.frame.action, params=scoped, user_sub=connection.user_sub,
                        username=connection.username, groups=connection.groups)
        self._invoker.start(self._worker_function, job.to_event())
