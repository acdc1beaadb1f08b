"""The model table: what each Bedrock model accepts and costs, in one place.

Every model a stage allows (ALLOWED_MODELS) must be in the table: the defaults below
hold Bedrock's published limits and on-demand prices (us-east-1, USD per million
tokens) for the models this project's stages use, and MODELS (a JSON object, see
docs/CONFIGURATION.md) overrides any field of a default entry or adds a model the
defaults do not know. A model allowed but unknown to both is a ConfigError: its output
cap and price cannot be guessed.

Sources: the Bedrock user guide's "Supported foundation models" and model cards (output
and context limits, modalities), "Prompt caching" (supported models, minimum tokens per
cache checkpoint, at most four checkpoints), "CountTokens" (supported models, foundation
model ids only), and the Amazon Bedrock pricing page (on-demand and cache prices).

An inference profile id (`us.`, `eu.`, `apac.`, `global.`... before the model id) or an
ARN names the same model as its foundation model id: its limits, prices and CountTokens
come from that entry, and CountTokens is called with the foundation model id.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

# The geography prefixes of Bedrock's cross-region inference profiles.
PROFILE_PREFIXES = ("us.", "us-gov.", "eu.", "apac.", "jp.", "au.", "ca.", "global.")
_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,127}$")
MAX_CACHE_POINTS = 4  # Bedrock's limit of cache checkpoints per request


class ModelTableError(ValueError):
    """The model table (MODELS) is not valid; the message says where."""


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float
    cache_write: float

    def wire(self) -> dict[str, float]:
        return {"input": self.input, "output": self.output, "cacheRead": self.cache_read,
                "cacheWrite": self.cache_write}


@dataclass(frozen=True)
class ModelSpec:
    id: str  # as configured in ALLOWED_MODELS: a model id, an inference profile id or an ARN
    name: str
    max_output_tokens: int  # the most a reply may generate (maxTokens is lowered to it)
    context_tokens: int  # input plus output
    tools: bool
    images: bool
    prompt_cache: bool
    min_cache_tokens: int  # the smallest prefix a cache checkpoint caches
    count_tokens: bool  # whether Bedrock's CountTokens counts this model's input
    aliases: tuple[str, ...] = ()
    price: ModelPrice | None = None

    @property
    def foundation_id(self) -> str:
        """The foundation model id (what CountTokens wants): the id without a profile prefix or ARN."""
        return foundation_id(self.id)

    def wire(self, *, default: bool) -> dict[str, Any]:
        """The protocol's `Model` object (models.list)."""
        return {"id": self.id, "name": self.name, "default": default, "maxOutputTokens": self.max_output_tokens,
                "contextTokens": self.context_tokens,
                "supports": {"tools": self.tools, "images": self.images, "promptCache": self.prompt_cache},
                "aliases": list(self.aliases), "price": self.price.wire() if self.price else None}


def foundation_id(model_id: str) -> str:
    """`us.anthropic.claude-sonnet-4-20250514-v1:0` -> `anthropic.claude-sonnet-4-20250514-v1:0`; ARNs
    (`arn:aws:bedrock:...:foundation-model/<id>`, `...:inference-profile/<profile id>`) likewise."""
    if model_id.startswith("arn:"):
        model_id = model_id.rsplit("/", 1)[-1]
    for prefix in PROFILE_PREFIXES:
        if model_id.startswith(prefix):
            return model_id[len(prefix):]
    return model_id


def _claude(name: str, *, output: int, prices: tuple[float, float, float, float] | None, images: bool = True,
            cache: bool = True, min_cache: int = 1024, count: bool = True, aliases: tuple[str, ...] = ()) -> dict:
    return {"name": name, "maxOutputTokens": output, "contextTokens": 200_000, "tools": True, "images": images,
            "promptCache": cache, "minCacheTokens": min_cache, "countTokens": count, "aliases": aliases,
            "price": prices}


# Keyed by foundation model id. Prices: (input, output, cache read, cache write), USD per million tokens.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "anthropic.claude-3-haiku-20240307-v1:0": _claude(
        "Claude 3 Haiku", output=4096, prices=(0.25, 1.25, 0.25, 0.25), cache=False, count=False,
        aliases=("claude-3-haiku-20240307", "claude-3-haiku")),
    "anthropic.claude-3-5-sonnet-20240620-v1:0": _claude(
        "Claude 3.5 Sonnet", output=4096, prices=(3.0, 15.0, 3.0, 3.0), cache=False,
        aliases=("claude-3-5-sonnet-20240620",)),
    "anthropic.claude-3-5-sonnet-20241022-v2:0": _claude(
        "Claude 3.5 Sonnet v2", output=8192, prices=(3.0, 15.0, 3.0, 3.0), cache=False,
        aliases=("claude-3-5-sonnet-20241022", "claude-3-5-sonnet-latest")),
    "anthropic.claude-3-5-haiku-20241022-v1:0": _claude(
        "Claude 3.5 Haiku", output=8192, prices=(0.8, 4.0, 0.08, 1.0), images=False, min_cache=2048,
        aliases=("claude-3-5-haiku-20241022", "claude-3-5-haiku-latest")),
    "anthropic.claude-3-7-sonnet-20250219-v1:0": _claude(
        "Claude 3.7 Sonnet", output=64_000, prices=(3.0, 15.0, 0.3, 3.75),
        aliases=("claude-3-7-sonnet-20250219", "claude-3-7-sonnet-latest")),
    "anthropic.claude-sonnet-4-20250514-v1:0": _claude(
        "Claude Sonnet 4", output=64_000, prices=(3.0, 15.0, 0.3, 3.75),
        aliases=("claude-sonnet-4-20250514", "claude-sonnet-4-0")),
    "anthropic.claude-opus-4-20250514-v1:0": _claude(
        "Claude Opus 4", output=32_000, prices=(15.0, 75.0, 1.5, 18.75),
        aliases=("claude-opus-4-20250514", "claude-opus-4-0")),
    "amazon.nova-micro-v1:0": {
        "name": "Amazon Nova Micro", "maxOutputTokens": 5000, "contextTokens": 128_000, "tools": True,
        "images": False, "promptCache": True, "minCacheTokens": 1000, "countTokens": False,
        "aliases": ("nova-micro",), "price": (0.035, 0.14, 0.00875, 0.035)},
    "amazon.nova-lite-v1:0": {
        "name": "Amazon Nova Lite", "maxOutputTokens": 5000, "contextTokens": 300_000, "tools": True,
        "images": True, "promptCache": True, "minCacheTokens": 1000, "countTokens": False,
        "aliases": ("nova-lite",), "price": (0.06, 0.24, 0.015, 0.06)},
    "amazon.nova-pro-v1:0": {
        "name": "Amazon Nova Pro", "maxOutputTokens": 5000, "contextTokens": 300_000, "tools": True,
        "images": True, "promptCache": True, "minCacheTokens": 1000, "countTokens": False,
        "aliases": ("nova-pro",), "price": (0.8, 3.2, 0.2, 0.8)},
}

_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str, "maxOutputTokens": int, "contextTokens": int, "tools": bool, "images": bool, "promptCache": bool,
    "minCacheTokens": int, "countTokens": bool, "aliases": list, "price": (dict, type(None))}
_PRICE_FIELDS = ("input", "output", "cacheRead", "cacheWrite")


class ModelTable:
    """The allowed models, by id and by alias; `resolve` is how `chat.send`'s `model` is read."""

    def __init__(self, models: Mapping[str, ModelSpec], default_id: str) -> None:
        self.models = MappingProxyType(dict(models))  # by id, in ALLOWED_MODELS order
        self.default_id = default_id
        names: dict[str, str] = {}
        for spec in models.values():
            for name in (spec.id, *spec.aliases):
                if names.setdefault(name, spec.id) != spec.id:
                    raise ModelTableError(f"the name {name!r} is used by {names[name]!r} and {spec.id!r}")
        self._names = names

    @property
    def default(self) -> ModelSpec:
        return self.models[self.default_id]

    def resolve(self, name: str) -> ModelSpec | None:
        """The model an id or alias names, or None if it names none of the allowed ones."""
        model_id = self._names.get(name)
        return None if model_id is None else self.models[model_id]

    def wire(self) -> list[dict[str, Any]]:
        """models.list's `models`: the default first, then the others in ALLOWED_MODELS order."""
        ordered = [self.default, *(m for m in self.models.values() if m.id != self.default_id)]
        return [model.wire(default=model.id == self.default_id) for model in ordered]


def builtin(model_id: str) -> ModelSpec | None:
    """The built-in entry of a model id, inference profile or ARN (no stage's overrides); None if unknown."""
    fields = _DEFAULTS.get(foundation_id(model_id))
    return None if fields is None else _spec(model_id, fields)


def build_table(allowed: tuple[str, ...], default_id: str, overrides_json: str | None) -> ModelTable:
    """The table of the allowed models: the defaults, with MODELS' overrides; ModelTableError if incomplete."""
    overrides = _parse_overrides(overrides_json)
    unknown = set(overrides) - set(allowed)
    if unknown:
        raise ModelTableError(f"it names models that ALLOWED_MODELS does not allow: {', '.join(sorted(unknown))}")
    models: dict[str, ModelSpec] = {}
    for model_id in allowed:
        fields = dict(_DEFAULTS.get(foundation_id(model_id), {}))
        fields.update(overrides.get(model_id, {}))
        missing = [name for name in _FIELDS if name not in fields]
        if missing:
            raise ModelTableError(f"{model_id!r} is not in the built-in table: give it {', '.join(missing)}")
        models[model_id] = _spec(model_id, fields)
    return ModelTable(models, default_id)


def _parse_overrides(raw: str | None) -> dict[str, dict[str, Any]]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ModelTableError("it is not valid JSON") from None
    if not isinstance(data, dict):
        raise ModelTableError("it must be a JSON object of model id -> fields")
    checked: dict[str, dict[str, Any]] = {}
    for model_id, fields in data.items():
        if not isinstance(fields, dict):
            raise ModelTableError(f"{model_id!r} must map to an object of fields")
        for name, value in fields.items():
            kind = _FIELDS.get(name)
            if kind is None:
                raise ModelTableError(f"{model_id!r} has an unknown field {name!r} (known: {', '.join(_FIELDS)})")
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ModelTableError(f"{model_id!r}.{name} has the wrong type")
        checked[model_id] = dict(fields)
        if isinstance(fields.get("price"), dict):
            price = fields["price"]
            if set(price) != set(_PRICE_FIELDS) or not all(_is_amount(price[k]) for k in _PRICE_FIELDS):
                raise ModelTableError(f"{model_id!r}.price must hold {', '.join(_PRICE_FIELDS)}, each >= 0")
            checked[model_id]["price"] = tuple(float(price[k]) for k in _PRICE_FIELDS)
    return checked


def _is_amount(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1_000_000


def _spec(model_id: str, fields: Mapping[str, Any]) -> ModelSpec:
    aliases = tuple(fields["aliases"])
    if not all(isinstance(a, str) and _ALIAS.match(a) for a in aliases):
        raise ModelTableError(f"{model_id!r}.aliases must be model-name strings")
    for name, low, high in (("maxOutputTokens", 1, 1_000_000), ("contextTokens", 1, 10_000_000),
                            ("minCacheTokens", 1, 1_000_000)):
        if not low <= fields[name] <= high:
            raise ModelTableError(f"{model_id!r}.{name} must be in {low}..{high}")
    price = fields["price"]
    return ModelSpec(id=model_id, name=fields["name"], max_output_tokens=fields["maxOutputTokens"],
                     context_tokens=fields["contextTokens"], tools=fields["tools"], images=fields["images"],
                     prompt_cache=fields["promptCache"], min_cache_tokens=fields["minCacheTokens"],
                     count_tokens=fields["countTokens"], aliases=aliases,
                     price=ModelPrice(*price) if price is not None else None)
