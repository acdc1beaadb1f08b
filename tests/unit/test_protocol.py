from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib import protocol
from chalicelib.errors import BadRequest, PayloadTooLarge
from chalicelib.protocol import FrameRejected, parse_frame, validate_path


def rejected(body, **kwargs) -> FrameRejected:
    with pytest.raises(FrameRejected) as info:
        parse_frame(body, **kwargs)
    return info.value


def test_valid_frame_is_parsed_with_params():
    frame = parse_frame(json.dumps({"action": "chat.send", "id": "a:b.c-1_2", "prompt": "hi"}))
    assert (frame.action, frame.id) == ("chat.send", "a:b.c-1_2")
    assert frame.params.string("prompt", required=True) == "hi"


def test_frame_over_32_kib_is_payload_too_large_and_echoes_the_id():
    body = json.dumps({"action": "ping", "id": "big", "pad": "x" * 40_000})
    error = rejected(body)
    assert isinstance(error.error, PayloadTooLarge)
    assert error.request_id == "big"


def test_frame_of_exactly_32_kib_is_accepted():
    base = json.dumps({"action": "ping", "id": "edge", "pad": ""})
    body = json.dumps({"action": "ping", "id": "edge", "pad": "x" * (32 * 1024 - len(base))})
    assert len(body.encode()) == 32 * 1024
    assert parse_frame(body).id == "edge"


def test_size_is_counted_in_utf8_bytes_not_characters():
    body = json.dumps({"action": "ping", "id": "u", "pad": "é" * 20_000}, ensure_ascii=False)
    assert len(body) < 32 * 1024 < len(body.encode())
    assert isinstance(rejected(body).error, PayloadTooLarge)


@pytest.mark.parametrize("body", ["not json", "[1,2]", "42", '"text"', "", "{", "null"])
def test_non_object_is_bad_request_without_id(body):
    error = rejected(body)
    assert isinstance(error.error, BadRequest) and error.request_id is None


@pytest.mark.parametrize("body, words", [
    ('{"action": "ping", "id": "t1",}',
     "the frame is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 31)"),
    ("{", "the frame is not valid JSON"),
    ('{"action": "ping" "id": "x"}', "the frame is not valid JSON (Expecting ',' delimiter: line 1 column 19)"),
    (b'{"prompt": "caf\xe9"}', "the frame is not UTF-8"),
    ("[1,2]", "a frame must be a JSON object"),
    ("null", "a frame must be a JSON object"),
])
def test_a_frame_that_is_no_json_object_says_what_it_is_instead(body, words):
    error = rejected(body)
    assert isinstance(error.error, BadRequest) and error.error.message.startswith(words)


@pytest.mark.parametrize("value, words", [
    ("NaN", "'temperature' is NaN, which is no JSON number"),
    ("-Infinity", "'temperature' is -Infinity, which is no JSON number"),
    ("1e400", "'temperature' is a number too large to read"),
    ("9" * 5000, "'temperature' is a number of 5000 digits, too large to read"),
])
def test_numbers_json_has_not_or_python_cannot_hold_are_bad_request_naming_the_field_and_echo_the_id(value, words):
    # Python's parser takes NaN and Infinity (JavaScript's, not JSON's: RFC 8259 has no such number), reads
    # 1e400 as infinity and refuses an integer of more than 4300 digits: none of them could reach Bedrock.
    error = rejected('{"action": "chat.send", "id": "n1", "prompt": "x", "temperature": ' + value + "}")
    assert isinstance(error.error, BadRequest) and error.request_id == "n1"
    assert error.error.message == words


def test_a_number_json_has_not_is_found_however_deep():
    body = '{"action": "chat.send", "id": "n2", "messages": [{"role": "user", "content": [{"type": "json", "json": ' \
           '{"a": [1, Infinity]}}]}]}'
    error = rejected(body)
    assert error.error.message == "'messages[0].content[0].json.a[1]' is Infinity, which is no JSON number"
    assert error.request_id == "n2"


def test_large_but_readable_numbers_are_kept():
    frame = parse_frame('{"action": "x", "id": "n3", "big": ' + "9" * 400 + ', "f": 1e300, "g": -0.0}')
    assert frame.params.raw("big") == int("9" * 400) and frame.params.raw("f") == 1e300


@pytest.mark.parametrize("frame_id", [None, "", "x" * 65, "has space", "ünï", 7, ["a"]])
def test_bad_id_is_bad_request(frame_id):
    error = rejected(json.dumps({"action": "ping", "id": frame_id}))
    assert isinstance(error.error, BadRequest) and error.request_id is None


@pytest.mark.parametrize("action", [None, "", 5, {"a": 1}])
def test_bad_action_is_bad_request_with_id(action):
    error = rejected(json.dumps({"action": action, "id": "r1"}))
    assert isinstance(error.error, BadRequest) and error.request_id == "r1"


def test_binary_frame_is_bad_request():
    assert isinstance(rejected("eyJ9", is_base64=True).error, BadRequest)


def test_params_type_errors_name_the_field():
    params = parse_frame(json.dumps({"action": "x", "id": "1", "n": "5", "flag": True, "s": 3})).params
    with pytest.raises(BadRequest, match="'n' must be an integer"):
        params.integer("n", minimum=0, maximum=10)
    with pytest.raises(BadRequest, match="'flag' must be an integer"):
        params.integer("flag", minimum=0, maximum=10)
    with pytest.raises(BadRequest, match="'s' must be a string"):
        params.string("s")
    with pytest.raises(BadRequest, match="'missing' is required"):
        params.string("missing", required=True)


@pytest.mark.parametrize("path", ["a.txt", "src/app.py", "deep/er/file name.md", "ünïcode/文件.txt", "a/.hidden"])
def test_valid_paths(path):
    assert validate_path(path) == path


@pytest.mark.parametrize("path", [
    "../etc/passwd", "/etc/passwd", "a/../../b", "a/./b", "a//b", "a/", "", "a\x00b", "a\\b",
    "x" * 1025, "é" * 600, "..", ".", "a/\n/b",
])
def test_invalid_paths_are_bad_request(path):
    with pytest.raises(BadRequest):
        validate_path(path)


@pytest.mark.parametrize("path", ["a\x7fb", "a\x85b", "csi\x9b2J.txt", "dir\x80/x", "x\x9f"])
def test_control_characters_c0_or_c1_are_refused_in_a_path(path):
    # C1 controls (U+0080-U+009F) are control characters as much as C0 ones: U+009B is a terminal's CSI.
    with pytest.raises(BadRequest, match="'path' must not contain NUL or control characters"):
        validate_path(path)


def test_paths_are_nfc_normalised():
    decomposed = "cafe\u0301.txt"
    assert validate_path(decomposed) == "caf\u00e9.txt"


def test_error_frame_shape():
    frame = protocol.error_frame(BadRequest("nope", retry_after=3), "r1")
    assert frame == {"type": "error", "id": "r1", "error": {"code": "BAD_REQUEST", "message": "nope", "retryAfter": 3}}
    assert "id" not in protocol.error_frame(BadRequest("nope"), None)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_any_input_is_parsed_or_rejected_cleanly(body):
    try:
        parse_frame(body)
    except FrameRejected as exc:
        assert exc.error.code in ("BAD_REQUEST", "PAYLOAD_TOO_LARGE")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_path_is_validated_or_bad_request(path):
    try:
        result = validate_path(path)
    except BadRequest:
        return
    assert not result.startswith("/") and ".." not in result.split("/") and "\x00" not in result
