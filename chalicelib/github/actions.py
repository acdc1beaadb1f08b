"""The github.* actions: access and parameters checked here, the GitHub calls in the github_worker."""
from __future__ import annotations

from collections.abc import Callable, Iterable

from chalicelib.aws.lambda_invoke import WorkerInvoker
from chalicelib.dispatch.contract import ActionContext
from chalicelib.errors import Forbidden
from chalicelib.github import params as github_params
from chalicelib.github.job import GitHubJob, ReplyTo


class GitHubActions:
    def __init__(self, *, invoker: WorkerInvoker, worker_function: str,
                 allowed: Callable[[Iterable[str]], bool]) -> None:
        self._invoker = invoker
        self._worker_function = worker_function
        self._allowed = allowed  # whether a user in these groups may use GitHub (GITHUB_ALLOWED_GROUPS)

    def hand_over(self, ctx: ActionContext) -> None:
        """Refuse what the worker would refuse, then start it: it answers the client itself."""
        connection = ctx.connection
        if not self._allowed(connection.groups):
            raise Forbidden("GitHub access is not granted to this user")
        checked = github_params.validate(ctx.frame.action, ctx.frame.params)
        job = GitHubJob(reply_to=ReplyTo(connection.connection_id, connection.endpoint, ctx.frame.id),
                        action=ctx.frame.action, params=checked, user_sub=connection.user_sub,
                        username=connection.username, groups=connection.groups)
        self._invoker.start(self._worker_function, job.to_event())
