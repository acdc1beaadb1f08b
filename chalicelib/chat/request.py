"""A chat.send, validated against the ChatPolicy: what the client asked for, as the worker receives it."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from chalicelib.chat.bedrock import ModelRequest
from chalicelib.config import Settings
from chalicelib.context.store import MAX_CONTEXT_PATHS
from chalicelib.errors import BadRequest, ModelNotAllowed
from chalicelib.models import ModelTable
from chalicelib.protocol import Params
from chalicelib.sessions.store import check_session_id

MAX_TOKENS_ASKED = 10_000_000  # a maxTokens above any model's cap is lowered; beyond this it is a mistake


@dataclass(frozen=True)
class ChatPolicy:
    """What a chat.send may ask for, and the defaults it gets (docs/CONFIGURATION.md names each setting)."""

    models: ModelTable  # ALLOWED_MODELS, DEFAULT_MODEL_ID and MODELS
    max_prompt_bytes: int  # MAX_PROMPT_BYTES, for `prompt` and `system` each
    default_max_tokens: int  # DEFAULT_MAX_TOKENS
    max_output_tokens: int  # MAX_OUTPUT_TOKENS: the stage's cap, below each model's own
    history_token_limit: int  # HISTORY_TOKEN_LIMIT
    context_token_limit: int  # CONTEXT_TOKEN_LIMIT

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatPolicy:
        return cls(models=settings.models, max_prompt_bytes=settings.max_prompt_bytes,
                   default_max_tokens=settings.default_max_tokens, max_output_tokens=settings.max_output_tokens,
                   history_token_limit=settings.history_token_limit, context_token_limit=settings.context_token_limit)


@dataclass(frozen=True)
class ChatRequest:
    prompt: str
    model: str
    max_tokens: int
    system: str | None = None
    temperature: float | None = None
    session_id: str | None = None  # continue this session (null: a stateless exchange)
    context_paths: tuple[str, ...] = ()  # context files for the model; checked by the ContextStore

    @classmethod
    def from_params(cls, params: Params, policy: ChatPolicy) -> ChatRequest:
        session_id = params.string("sessionId")
        if session_id is not None:
            check_session_id(session_id)  # BAD_REQUEST for a malformed id; ownership is checked by the store
        context_paths = params.list_of("contextPaths", max_items=MAX_CONTEXT_PATHS) or []
        if any(not isinstance(path, str) for path in context_paths):
            raise BadRequest("'contextPaths' must be a list of paths")
        prompt = params.text("prompt", required=True, max_bytes=policy.max_prompt_bytes)
        system = params.text("system", max_bytes=policy.max_prompt_bytes)
        name = params.string("model", max_length=256)
        model = policy.models.default if name is None else policy.models.resolve(name)
        if model is None:
            allowed = ", ".join(policy.models.models)
            raise ModelNotAllowed(f"model {(name or '')[:80]!r} is not allowed; allowed: {allowed}")
        # Above the model's own cap (or the stage's), maxTokens is lowered to it: what the ack grants.
        cap = min(model.max_output_tokens, policy.max_output_tokens)
        max_tokens = params.integer("maxTokens", minimum=1, maximum=MAX_TOKENS_ASKED)
        temperature = params.number("temperature", minimum=0.0, maximum=1.0)
        return cls(prompt=prompt, model=model.id, max_tokens=min(max_tokens or policy.default_max_tokens, cap),
                   system=system, temperature=temperature, session_id=session_id,
                   context_paths=tuple(context_paths))

    def model_request(self, *, max_tokens: int, messages: list[dict[str, Any]] | None = None) -> ModelRequest:
        """The model call: `max_tokens` is the reservation's (the request's, or lowered to fit the budget)."""
        return ModelRequest(model_id=self.model, prompt=self.prompt, max_tokens=max_tokens, system=self.system,
                            temperature=self.temperature, messages=tuple(messages) if messages is not None else None)

    def to_payload(self) -> dict[str, Any]:
        return {**asdict(self), "context_paths": list(self.context_paths)}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ChatRequest:
        return cls(prompt=payload["prompt"], model=payload["model"], max_tokens=int(payload["max_tokens"]),
                   system=payload.get("system"), temperature=payload.get("temperature"),
                   session_id=payload.get("session_id"), context_paths=tuple(payload.get("context_paths") or ()))

