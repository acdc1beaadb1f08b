"""A chat.send, validated against the ChatPolicy: what the client asked for, as the worker receives it.

The model's input comes as `prompt` (v1) or as `messages` (v1.1), with `system`, `tools` and
`toolChoice`: the *content* parameters. They come in the frame, or in a body uploaded with
`chat.upload` (chalicelib/chat/uploads.py), which can be far larger than a frame: then the
worker's job carries a reference to the body instead of the content (a Lambda event holds
256 KB), and the worker reads the body itself (`with_content`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any

from chalicelib.chat.bedrock import ModelRequest
from chalicelib.chat.conversation import ContentRules, Conversation, parse_messages
from chalicelib.chat.tools import ToolConfig, parse_tools
from chalicelib.config import Settings
from chalicelib.context.store import MAX_CONTEXT_PATHS
from chalicelib.errors import BadRequest, ModelNotAllowed
from chalicelib.models import ModelTable
from chalicelib.protocol import Params
from chalicelib.sessions.store import check_session_id

CONTENT_FIELDS = ("prompt", "system", "messages", "tools", "toolChoice")  # what an upload's body may hold, and more


@dataclass(frozen=True)
class ChatPolicy:
    """What a chat.send may ask for, and the defaults it gets (docs/CONFIGURATION.md names each setting)."""

    models: ModelTable  # ALLOWED_MODELS, DEFAULT_MODEL_ID and MODELS
    max_prompt_bytes: int  # MAX_PROMPT_BYTES, for `prompt` and `system` each, in a frame
    default_max_tokens: int  # DEFAULT_MAX_TOKENS
    max_output_tokens: int  # MAX_OUTPUT_TOKENS: the stage's cap, below each model's own
    history_token_limit: int  # HISTORY_TOKEN_LIMIT
    context_token_limit: int  # CONTEXT_TOKEN_LIMIT
    max_tools: int = 128  # CHAT_MAX_TOOLS
    upload_max_bytes: int = 8 * 1024 * 1024  # CHAT_UPLOAD_MAX_BYTES: a body's limit, and so its texts'

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatPolicy:
        return cls(models=settings.models, max_prompt_bytes=settings.max_prompt_bytes,
                   default_max_tokens=settings.default_max_tokens, max_output_tokens=settings.max_output_tokens,
                   history_token_limit=settings.history_token_limit, context_token_limit=settings.context_token_limit,
                   max_tools=settings.chat_max_tools, upload_max_bytes=settings.chat_upload_max_bytes)


@dataclass(frozen=True)
class UploadRef:
    """A chat's body in the upload bucket: what the worker reads instead of content in its event."""

    upload_id: str
    etag: str  # the body the handler checked: the worker reads exactly that one (If-Match)
    frame_content: dict[str, Any]  # content parameters that came in the frame itself (small)

    def to_payload(self) -> dict[str, Any]:
        return {"uploadId": self.upload_id, "etag": self.etag, "frameContent": self.frame_content}

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> UploadRef:
        return cls(upload_id=data["uploadId"], etag=data["etag"], frame_content=dict(data["frameContent"]))


@dataclass(frozen=True)
class ChatRequest:
    prompt: str | None
    model: str
    max_tokens: int
    system: str | None = None
    temperature: float | None = None
    session_id: str | None = None  # continue this session (null: a stateless exchange)
    context_paths: tuple[str, ...] = ()  # context files for the model; checked by the ContextStore
    messages: tuple[Any, ...] | None = None  # the conversation as the client sent it (checked)
    tools: tuple[Any, ...] | None = None  # as the client sent them (checked)
    tool_choice: Any = None
    rules: ContentRules | None = None  # the model's, as the table said at admission (None: text only)
    upload: UploadRef | None = None  # set: the content is in this upload, not in the fields above

    @classmethod
    def from_params(cls, params: Params, policy: ChatPolicy, *, upload: UploadRef | None = None,
                    body_fields: frozenset[str] = frozenset()) -> ChatRequest:
        """Every rule of the protocol, checked before the chat is admitted (BAD_REQUEST naming the field).

        With an upload, `params` are the frame's and the body's together; `body_fields` names those that
        came in the body, which a frame's text limit (MAX_PROMPT_BYTES) does not bound.
        """
        session_id = params.string("sessionId")
        if session_id is not None:
            check_session_id(session_id)  # BAD_REQUEST for a malformed id; ownership is checked by the store
        context_paths = params.list_of("contextPaths", max_items=MAX_CONTEXT_PATHS) or []
        if any(not isinstance(path, str) for path in context_paths):
            raise BadRequest("'contextPaths' must be a list of paths")
        raw_messages = params.raw("messages")
        has_messages = raw_messages is not None
        if has_messages and not isinstance(raw_messages, list):
            raise BadRequest("'messages' must be a non-empty list")
        if has_messages and params.raw("prompt") is not None:
            raise BadRequest("'prompt' and 'messages' cannot both be given")
        if has_messages and session_id is not None:
            raise BadRequest("'messages' cannot go with 'sessionId': the client holds the conversation")
        if session_id is not None and params.raw("tools"):
            raise BadRequest("'tools' cannot go with 'sessionId': a session keeps no tool calls; send 'messages'")

        def limit(name: str) -> int:
            return policy.upload_max_bytes if name in body_fields else policy.max_prompt_bytes

        prompt = None if has_messages else params.text("prompt", required=True, max_bytes=limit("prompt"))
        system = params.text("system", max_bytes=limit("system"))
        name = params.string("model", max_length=256)
        model = policy.models.default if name is None else policy.models.resolve(name)
        if model is None:
            allowed = ", ".join(policy.models.models)
            raise ModelNotAllowed(f"model {(name or '')[:80]!r} is not allowed; allowed: {allowed}")
        # Above the model's own cap (or the stage's), maxTokens is lowered to it: what the ack grants.
        cap = min(model.max_output_tokens, policy.max_output_tokens)
        max_tokens = params.integer("maxTokens", minimum=1, maximum=None)  # the contract: any above the cap is lowered
        temperature = params.number("temperature", minimum=0.0, maximum=1.0)
        tools = params.raw("tools")
        chat = cls(prompt=prompt, model=model.id, max_tokens=min(max_tokens or policy.default_max_tokens, cap),
                   system=system, temperature=temperature, session_id=session_id,
                   context_paths=tuple(context_paths),
                   messages=tuple(raw_messages) if has_messages else None,
                   tools=tuple(tools) if isinstance(tools, list) else tools, tool_choice=params.raw("toolChoice"),
                   rules=ContentRules(model=model.id, images=model.images, tools=model.tools,
                                      prompt_cache=model.prompt_cache, min_cache_tokens=model.min_cache_tokens,
                                      context_tokens=model.context_tokens, max_tools=policy.max_tools),
                   upload=upload)
        chat.check_content()
        return chat

    # --- the content, parsed once per process ------------------------------

    def check_content(self) -> None:
        """Parse the conversation and the tools: their BAD_REQUEST (or PAYLOAD_TOO_LARGE), if any."""
        _ = self.conversation, self.tool_config

    @cached_property
    def conversation(self) -> Conversation | None:
        if self.messages is None:
            return None
        return parse_messages(list(self.messages), self._rules)

    @cached_property
    def tool_config(self) -> ToolConfig | None:
        rules = self._rules
        return parse_tools(list(self.tools) if isinstance(self.tools, tuple) else self.tools, self.tool_choice,
                           max_tools=rules.max_tools, model_has_tools=rules.tools, model=self.model)

    @property
    def _rules(self) -> ContentRules:
        return self.rules or ContentRules(model=self.model)

    def with_content(self, content: dict[str, Any]) -> ChatRequest:
        """This chat with its content parameters from an upload's body (and the frame's own), parsed.

        The handler checked that very body (the worker reads it If-Match its ETag); a fault here is a bug.
        """
        messages, tools = content.get("messages"), content.get("tools")
        chat = replace(self, prompt=content.get("prompt"), system=content.get("system"),
                       messages=tuple(messages) if isinstance(messages, list) else None,
                       tools=tuple(tools) if isinstance(tools, list) else None, tool_choice=content.get("toolChoice"))
        chat.check_content()
        return chat

    # --- the model call and the worker's event --------------------------------

    def model_request(self, *, max_tokens: int, converse_input: dict[str, Any] | None = None) -> ModelRequest:
        """The model call: `max_tokens` is the reservation's (the request's, or lowered to fit the budget);
        `converse_input` what `inputs.load_input` built (messages, system, toolConfig)."""
        converse_input = converse_input or {}
        messages = converse_input.get("messages")
        return ModelRequest(model_id=self.model, prompt=self.prompt or "", max_tokens=max_tokens,
                            system=self.system, temperature=self.temperature,
                            messages=tuple(messages) if messages is not None else None,
                            system_blocks=tuple(converse_input["system"]) if "system" in converse_input else None,
                            tool_config=converse_input.get("toolConfig"))

    def to_payload(self) -> dict[str, Any]:
        """The chat as the worker's event carries it: the content itself, or the reference to its upload
        (whose body may be far larger than the 256 KB of a Lambda event)."""
        in_event = self.upload is None
        return {"prompt": self.prompt if in_event else None, "model": self.model, "max_tokens": self.max_tokens,
                "system": self.system if in_event else None, "temperature": self.temperature,
                "session_id": self.session_id, "context_paths": list(self.context_paths),
                "messages": list(self.messages) if in_event and self.messages is not None else None,
                "tools": (list(self.tools) if isinstance(self.tools, tuple) else self.tools) if in_event else None,
                "tool_choice": self.tool_choice if in_event else None,
                "rules": asdict(self.rules) if self.rules is not None else None,
                "upload": self.upload.to_payload() if self.upload is not None else None}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ChatRequest:
        messages, tools = payload.get("messages"), payload.get("tools")
        rules = payload.get("rules")
        upload = payload.get("upload")
        return cls(prompt=payload["prompt"], model=payload["model"], max_tokens=int(payload["max_tokens"]),
                   system=payload.get("system"), temperature=payload.get("temperature"),
                   session_id=payload.get("session_id"), context_paths=tuple(payload.get("context_paths") or ()),
                   messages=tuple(messages) if messages is not None else None,
                   tools=tuple(tools) if isinstance(tools, list) else tools, tool_choice=payload.get("tool_choice"),
                   rules=ContentRules(**rules) if rules else None,
                   upload=UploadRef.from_payload(upload) if upload else None)
