"""A chat.send, validated: what the client may ask for, and the work item handed to the worker."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from chalicelib.chat.bedrock import ModelRequest
from chalicelib.config import Settings
from chalicelib.context.store import MAX_CONTEXT_PATHS
from chalicelib.errors import BadRequest, ModelNotAllowed, PayloadTooLarge
from chalicelib.protocol import Params
from chalicelib.sessions.store import check_session_id


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
    def from_params(cls, params: Params, settings: Settings) -> "ChatRequest":
        session_id = params.string("sessionId")
        if session_id is not None:
            check_session_id(session_id)  # BAD_REQUEST for a malformed id; ownership is checked by the store
        context_paths = params.list_of("contextPaths", max_items=MAX_CONTEXT_PATHS) or []
        if any(not isinstance(path, str) for path in context_paths):
            raise BadRequest("'contextPaths' must be a list of paths")
        prompt = params.string("prompt", required=True) or ""  # required: never None here
        _check_size("prompt", prompt, settings.max_prompt_bytes)
        system = params.string("system")
        if system is not None:
            _check_size("system", system, settings.max_prompt_bytes)
        model = params.string("model", max_length=256) or settings.default_model_id
        if model not in settings.allowed_models:
            raise ModelNotAllowed(f"model {model[:80]!r} is not allowed; allowed: {', '.join(settings.allowed_models)}")
        max_tokens = params.integer("maxTokens", minimum=1, maximum=settings.max_output_tokens)
        temperature = params.number("temperature", minimum=0.0, maximum=1.0)
        return cls(prompt=prompt, model=model, max_tokens=max_tokens or settings.default_max_tokens,
                   system=system, temperature=temperature, session_id=session_id,
                   context_paths=tuple(context_paths))

    def model_request(self, *, max_tokens: int, messages: list[dict[str, Any]] | None = None) -> ModelRequest:
        """The model call: `max_tokens` is the reservation's (the request's, or lowered to fit the budget)."""
        return ModelRequest(model_id=self.model, prompt=self.prompt, max_tokens=max_tokens, system=self.system,
                            temperature=self.temperature, messages=tuple(messages) if messages is not None else None)

    def to_payload(self) -> dict[str, Any]:
        return {**asdict(self), "context_paths": list(self.context_paths)}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "ChatRequest":
        fields = {k: payload.get(k) for k in ("prompt", "model", "max_tokens", "system", "temperature", "session_id")}
        return cls(**fields, context_paths=tuple(payload.get("context_paths") or ()))


def _check_size(name: str, value: str, limit: int) -> None:
    size = len(value.encode("utf-8"))
    if size > limit:
        raise PayloadTooLarge(f"'{name}' is {size} bytes; the limit is {limit}")
