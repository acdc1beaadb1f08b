"""The chat actions: `chat.send` admits a chat and hands it to the worker; `chat.cancel` flags it;
`chat.countTokens` counts a chat's input as `chat.send` would reserve it.

`chat.resume` is in resume.py.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from chalicelib import protocol
from chalicelib.aws.lambda_invoke import WorkerInvoker
from chalicelib.chat.counting import InputCounter
from chalicelib.chat.inputs import ContextSource, HistorySource, InputPlan, plan_input
from chalicelib.chat.job import ChatJob
from chalicelib.chat.request import ChatPolicy, ChatRequest
from chalicelib.chat.requests import RequestStore, new_request_id
from chalicelib.chat.uploads import UPLOAD_LIFETIME_SECONDS, UploadStore
from chalicelib.dispatch.contract import ActionContext
from chalicelib.errors import BadRequest, BudgetExceeded, NotFound, RateLimited
from chalicelib.limits import Pricing, RateLimiter, Reservation, TokenBudget
from chalicelib.models import ModelTable
from chalicelib.observability import metric_names
from chalicelib.observability.metrics import MetricsWriter, get_metrics
from chalicelib.observability.tracing import subsegment
from chalicelib.protocol import Params

logger = logging.getLogger(__name__)


class ModelActions:
    """`models.list`: the models a caller may name in `chat.send`, the default first."""

    def __init__(self, models: ModelTable) -> None:
        self._models = models

    def list_models(self, ctx: ActionContext) -> dict[str, Any]:
        return protocol.result(ctx.frame.id, {"models": self._models.wire()})


class ChatActions:
    def __init__(self, *, policy: ChatPolicy, rate_limiter: RateLimiter, budget: TokenBudget,
                 requests: RequestStore, history: HistorySource, context: ContextSource, invoker: WorkerInvoker,
                 worker_function: str, uploads: Callable[[], UploadStore] | None = None,
                 counter: InputCounter | None = None, metrics: Callable[[], MetricsWriter] = get_metrics,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._policy = policy
        self._counter = counter  # Bedrock's CountTokens, for models whose table entry says it counts
        self._uploads = uploads  # built only for a chat.send with an uploadId
        self._rate_limiter = rate_limiter
        self._budget = budget
        self._requests = requests
        self._history = history
        self._context = context
        self._invoker = invoker
        self._worker_function = worker_function
        self._metrics = metrics
        # When the chat was received, for its latency metrics: the real time, as the worker measures
        # against `time.time()` (not the root's clock, which a test or the local stack may hold still).
        self._wall_clock = wall_clock

    def send(self, ctx: ActionContext) -> None:
        """Check, admit (one write: the request and the token reservation), record, then start the worker.

        Everything that can refuse the chat (parameters, an upload's body, the session, the context
        files, the model's context window, the limits) answers here. The worker posts the `ack`
        itself, first on its one ordered sender, while it already calls the model: the ack precedes
        every delta by construction, and the model does not wait for it. Admitted itself
        (Admission.SELF in the action table): the dispatch does not count it.
        """
        received_at = self._wall_clock()
        connection = ctx.connection
        self._rate_limiter.check_memory(connection.user_sub, ctx.now)  # a limited user costs no reads
        request_id = new_request_id()
        try:
            chat = self._chat_request(ctx)
            plan = self._plan(chat, connection.user_sub)
            with subsegment("admission", action="chat.send"):
                reservation = self._budget.reserve(
                    connection.user_sub, ctx.now, groups=connection.groups, request_id=request_id,
                    input_tokens=plan.input_tokens, max_tokens=self._room(chat, plan),
                    pricing=Pricing.of(self._policy.models.models[chat.model]))
        except RateLimited:
            raise  # the minute's window is full: nothing more can count in it
        except BudgetExceeded:
            self._metrics().emit(metric_names.BUDGET_EXCEEDED, 1, dimensions={metric_names.MODEL: chat.model})
            self._count_refused(ctx)
            raise
        except Exception:
            self._count_refused(ctx)
            raise
        try:
            self._requests.create(request_id=request_id, kind="chat", user_sub=connection.user_sub,
                                  connection_id=connection.connection_id, client_id=ctx.frame.id, model=chat.model,
                                  now=ctx.now, upload_id=chat.upload.upload_id if chat.upload is not None else None,
                                  upload_ttl_seconds=UPLOAD_LIFETIME_SECONDS + 3600)
        except Exception:
            self._release(reservation, chat.model)
            raise
        job = ChatJob(request_id=request_id, client_id=ctx.frame.id, connection_id=connection.connection_id,
                      endpoint=connection.endpoint, user_sub=connection.user_sub, chat=chat, reservation=reservation,
                      plan=plan, received_at=received_at)
        try:
            self._invoker.start(self._worker_function, job.to_event())
        except Exception:
            if self._give_up(request_id, reservation, chat.model):
                raise
            logger.warning("starting the worker failed, but it took the chat", extra={"requestId": request_id})
            return
        logger.info("chat admitted", extra={"requestId": request_id, "sub": connection.user_sub, "model": chat.model,
                                            "inputTokens": plan.input_tokens, "inputExact": plan.exact,
                                            "maxTokens": reservation.max_tokens,
                                            "costReservedMicros": reservation.cost_micros})

    def count_tokens(self, ctx: ActionContext) -> dict[str, Any]:
        """`chat.countTokens`: the input `chat.send` with these parameters would reserve, `{"inputTokens", "exact"}`.

        Every parameter and rule of chat.send (an upload is read, not used up); `exact` when Bedrock counted
        the whole input, else `inputTokens` is an upper bound of what it would charge. Counted as one request
        by the dispatch; nothing is reserved.
        """
        chat = self._chat_request(ctx)
        plan = self._plan(chat, ctx.connection.user_sub)
        return protocol.result(ctx.frame.id, {"inputTokens": plan.input_tokens, "exact": plan.exact})

    def _plan(self, chat: ChatRequest, user_sub: str) -> InputPlan:
        model = self._policy.models.models[chat.model]
        counter = self._counter
        return plan_input(chat, user_sub=user_sub, sessions=self._history, context=self._context,
                          history_limit=self._policy.history_token_limit,
                          context_limit=self._policy.context_token_limit,
                          count=(lambda request: counter.count(model, request)) if counter is not None else
                          (lambda request: None))

    def _give_up(self, request_id: str, reservation: Reservation, model: str) -> bool:
        """Starting the worker failed, or seemed to: end the chat here, unless a worker took it; True if ended.

        The record's one transition decides (RequestStore.fail_unclaimed against the worker's claim):
        won, nothing stays reserved and the client is to be told; lost, the worker runs after all,
        acks, streams and settles the chat, so nothing is released or answered here.
        """
        try:
            if not self._requests.fail_unclaimed(request_id, error_code="INTERNAL"):
                return False
        except Exception:
            # Who owns the chat is unknown: keep the reservation (settled by a worker that runs, else held
            # until its hour ends: never in the user's favour), and tell the client it did not start.
            logger.exception("recording a chat that did not start failed", extra={"requestId": request_id})
            return True
        self._release(reservation, model)
        return True

    def _chat_request(self, ctx: ActionContext) -> ChatRequest:
        """The chat as the frame (and the upload it names) asks for it, every rule checked."""
        params = ctx.frame.params
        if params.raw("uploadId") is None:
            return ChatRequest.from_params(params, self._policy)
        if self._uploads is None:
            raise BadRequest("'uploadId' is not served here")
        opened = self._uploads().open(ctx.connection.user_sub, params.values())
        return ChatRequest.from_params(Params(opened.params), self._policy, upload=opened.ref,
                                       body_fields=opened.body_fields)

    @staticmethod
    def _room(chat: ChatRequest, plan: InputPlan) -> int:
        """maxTokens, lowered so that the input and the reply fit the model's context window."""
        window = chat.rules.context_tokens if chat.rules is not None else 0
        return max(1, min(chat.max_tokens, window - plan.estimate)) if window else chat.max_tokens

    def _count_refused(self, ctx: ActionContext) -> None:
        """A chat refused before its admission (bad parameters, an unknown session, the budget, or a
        failure of ours) still counts as a request, like every action but ping: a client that keeps
        sending refused chats is rate-limited like any other."""
        connection = ctx.connection
        try:
            self._rate_limiter.admit(connection.user_sub, ctx.now, groups=connection.groups)
        except RateLimited:  # the window is full already: the refusal the client gets stays the chat's own
            logger.info("a refused chat found the request window full")
        except Exception:
            logger.exception("counting a refused chat failed")

    def _release(self, reservation: Reservation, model: str) -> None:
        """Settle a chat that never reached the model to zero, so its reservation is not held until the hour ends."""
        try:
            self._budget.release(reservation, model)
        except Exception:
            logger.exception("releasing a reservation failed", extra={"requestId": reservation.request_id})

    def cancel(self, ctx: ActionContext) -> dict[str, Any]:
        """Flag a running chat of the caller's; the worker ends it with `done`, stopReason `cancelled`."""
        name = ctx.frame.params.string("requestId", required=True)
        if not protocol.is_request_id(name):
            raise BadRequest("'requestId' must be 1-64 characters of [A-Za-z0-9_.:-]")
        request_id = self._requests.resolve(name=name, connection_id=ctx.connection.connection_id)
        # Another user's request and no request at all look the same: NOT_FOUND, nothing revealed.
        if not self._requests.request_cancel(request_id=request_id, user_sub=ctx.connection.user_sub, now=ctx.now):
            raise NotFound("no running request with that id")
        logger.info("chat cancel requested", extra={"requestId": request_id, "sub": ctx.connection.user_sub})
        return protocol.result(ctx.frame.id, {"cancelled": True})
