"""The input the Bedrock emulator makes up for a forced tool call (toolChoice `tool` or `any`) from the tool's schema:
its required properties, each of its JSON type within its bounds, and small whatever the schema asks."""
from __future__ import annotations

import pytest

from devserver.bedrock_model import EXAMPLE_CHARS, EXAMPLE_ITEMS, example, forced_calls


@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": "integer", "minimum": 3, "maximum": 9}, 3),
    ({"type": "integer", "exclusiveMinimum": 3}, 4),
    ({"type": "integer", "maximum": -2}, -2),
    ({"type": "number", "exclusiveMinimum": 0.25}, 1.0),
    ({"type": "number", "exclusiveMinimum": 7.5}, 8.5),
    ({"type": "integer", "minimum": 2, "exclusiveMinimum": True}, 3),  # draft 4's boolean makes `minimum` exclusive
    ({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, 0.5),
    ({"type": "number", "minimum": 0, "exclusiveMaximum": 0.5}, 0.0),
    ({"type": "number", "exclusiveMaximum": 0.5}, 0.0),
    ({"type": "integer", "exclusiveMinimum": 0.5, "exclusiveMaximum": 2}, 1),
    ({"type": "integer", "minimum": 5, "maximum": 1}, 5),  # no number fits: the lower bound
    ({"type": ["null", "boolean"]}, True),
    ({"type": "null"}, None),
    ({"enum": ["a", "b"]}, "a"),
    ({"const": 7, "type": "integer"}, 7),
    ({"type": "string", "default": "main"}, "main"),
    ({"oneOf": [{"type": "integer"}, {"type": "string"}]}, 1),
    ({"type": "string", "maxLength": 4}, "exam"),
    ({"type": "array", "minItems": 2, "items": {"type": "boolean"}}, [True, True]),
    ({"type": "array", "maxItems": 0}, []),
    ({"type": "object", "properties": {"a": {"type": "string"}}}, {}),  # nothing required: nothing made up
    ({"properties": {"a": {"type": "integer"}}, "required": ["a", "b"]}, {"a": 1, "b": "example b"}),
])
def test_each_json_type_gets_a_value_its_schema_allows(schema, expected):
    assert example(schema, schema, "value") == expected


def test_refs_are_followed_and_a_recursive_schema_ends():
    schema = {"$ref": "#/$defs/node", "$defs": {"node": {"type": "object", "required": ["next"],
                                                         "properties": {"next": {"$ref": "#/$defs/node"}}}}}
    value = example(schema, schema)
    depth = 0
    while isinstance(value, dict):
        value, depth = value["next"], depth + 1
    assert value is None and depth > 1


@pytest.mark.parametrize("bound", [10**9, "many", -1, True])
def test_hostile_bounds_make_a_small_value_never_an_error(bound):
    schema = {"type": "object", "required": ["s", "a"], "properties": {
        "s": {"type": "string", "minLength": bound}, "a": {"type": "array", "minItems": bound}}}
    value = example(schema, schema)
    assert len(value["s"]) <= EXAMPLE_CHARS and 1 <= len(value["a"]) <= EXAMPLE_ITEMS


def test_any_among_no_tool_specs_forces_nothing():
    """toolChoice `any` beside cache points only used to end the emulator in StopIteration."""
    request = {"toolConfig": {"tools": [{"cachePoint": {"type": "default"}}], "toolChoice": {"any": {}}}}
    assert forced_calls(request, []) is None
