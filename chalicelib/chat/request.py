"""A chat.send, validated: what the client may ask for, and the work item handed to the worker."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from chalicelib.bedrock import ModelRequest
from chalicelib.config import Settings
from chalicelib.errors import BadRequest, ModelNotAllowed, PayloadTooLarge
from chalicelib.protocol import Params



@dataclass(frozen=True)
class ChatRequest:
    prompt: str
    model: str
    max_tokens: int
    system: str | None = None
    temperature: float | None = None

    @classmethod
    def from_params(cls, params: Params, settings: Settings) -> "ChatRequest":
        # Sessions and context files come with later issues: a chat that asks for them must
        # not be answered as if it had not (null and an empty list ask for nothing).
        if params.string("sessionId") is not None:
            raise BadRequest("'sessionId' is not supported by this server yet")
        if params.list_of("contextPaths", max_items=1000):
            raise BadRequest("'contextPaths' is not supported by this server yet")
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
                   system=system, temperature=temperature)

    def model_request(self) -> ModelRequest:
        return ModelRequest(model_id=self.model, prompt=self.prompt, max_tokens=self.max_tokens,
                            system=self.system, temperature=self.temperature)

    def estimated_input_tokens(self) -> int:
        return estimate_tokens(self.prompt) + estimate_tokens(self.system or "")

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "ChatRequest":
        return cls(**{k: payload.get(k) for k in ("prompt", "model", "max_tokens", "system", "temperature")})


def estimate_tokens(text: str) -> int:
    """About one token per 4 bytes of UTF-8, rounded up: used when the model reports no usage."""
    return (len(text.encode("utf-8")) + 3) // 4


def _check_size(name: str, value: str, limit: int) -> None:
    size = len(value.encode("utf-8"))
    if size > limit:
        raise PayloadTooLarge(f"'{name}' is {size} bytes; the limit is {limit}")
