"""parse_request: raw bodies to request models, or a 400 naming the field the way OpenAI does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from server.api.openai.protocol import ChatCompletionRequest, CompletionRequest
from server.api.openai.validation import parse_request
from server.errors import InvalidRequest

MESSAGES = [{"role": "user", "content": "hi"}]


def chat_body(**fields: Any) -> bytes:
    return json.dumps({"model": "m", "messages": MESSAGES, **fields}).encode()


def refused(body: bytes, model: type[ChatCompletionRequest] | type[CompletionRequest]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_request(body, model)
    error = info.value
    assert error.status == 400
    assert error.error_type == "invalid_request_error"
    assert error.message
    return error


@pytest.mark.parametrize("body", [b"{", b"", b"not json", b'{"model": "m",}', b"\xff\xfe"])
def test_malformed_json(body: bytes) -> None:
    error = refused(body, ChatCompletionRequest)
    assert error.param is None
    assert "JSON" in error.message


@pytest.mark.parametrize("body", [b"[]", b'[{"model": "m"}]', b'"text"', b"42", b"null"])
def test_body_not_an_object(body: bytes) -> None:
    error = refused(body, ChatCompletionRequest)
    assert error.param is None
    assert "object" in error.message


@pytest.mark.parametrize(
    ("body", "model", "param"),
    [
        ({"messages": MESSAGES}, ChatCompletionRequest, "model"),
        ({"model": "m"}, ChatCompletionRequest, "messages"),
        ({"prompt": "x"}, CompletionRequest, "model"),
        ({"model": "m"}, CompletionRequest, "prompt"),
        ({"model": "m", "messages": [{"content": "x"}]}, ChatCompletionRequest, "messages[0].role"),
    ],
)
def test_missing_required(
    body: dict[str, Any], model: type[ChatCompletionRequest] | type[CompletionRequest], param: str
) -> None:
    error = refused(json.dumps(body).encode(), model)
    assert error.param == param
    assert error.code == "missing_required_parameter"
    assert f"'{param}'" in error.message


def test_empty_messages() -> None:
    error = refused(json.dumps({"model": "m", "messages": []}).encode(), ChatCompletionRequest)
    assert error.param == "messages"
    assert error.code == "empty_array"
    assert error.message.startswith("Invalid 'messages': empty array.")


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [0, -5])
def test_max_tokens_below_minimum(field: str, value: int) -> None:
    error = refused(chat_body(**{field: value}), ChatCompletionRequest)
    assert error.param == field
    assert error.code == "integer_below_min_value"
    assert str(value) in error.message


def test_completion_max_tokens_below_minimum() -> None:
    body = json.dumps({"model": "m", "prompt": "x", "max_tokens": 0}).encode()
    error = refused(body, CompletionRequest)
    assert error.param == "max_tokens"
    assert error.code == "integer_below_min_value"


@pytest.mark.parametrize("value", [3, 2.5, -0.1])
def test_temperature_out_of_range(value: float) -> None:
    error = refused(chat_body(temperature=value), ChatCompletionRequest)
    assert error.param == "temperature"
    assert error.code is not None
    assert error.code.endswith(("_above_max_value", "_below_min_value"))


@pytest.mark.parametrize(
    ("field", "value"),
    [("temperature", "0.5"), ("max_tokens", "10"), ("stream", 1), ("stream", "true"), ("n", 1.5), ("model", 3)],
)
def test_types_are_strict(field: str, value: Any) -> None:
    error = refused(chat_body(**{field: value}), ChatCompletionRequest)
    assert error.param == field
    assert error.code == "invalid_type"


def test_stop_list_too_long() -> None:
    error = refused(chat_body(stop=["a", "b", "c", "d", "e"]), ChatCompletionRequest)
    assert error.param == "stop"
    # the list was too long; that it is also "not a string" is beside the point
    assert error.code == "array_above_max_length"
    assert "string" not in error.message


def test_stop_of_four_accepted() -> None:
    request = parse_request(chat_body(stop=["a", "b", "c", "d"]), ChatCompletionRequest)
    assert request.stop == ["a", "b", "c", "d"]


def test_stop_wrong_type() -> None:
    error = refused(chat_body(stop=5), ChatCompletionRequest)
    assert error.param == "stop"
    assert error.code == "invalid_type"


@pytest.mark.parametrize(("value", "code"), [(0, "integer_below_min_value"), (129, "integer_above_max_value")])
def test_n_out_of_range(value: int, code: str) -> None:
    error = refused(chat_body(n=value), ChatCompletionRequest)
    assert error.param == "n"
    assert error.code == code


def test_n_bounds_accepted() -> None:
    assert parse_request(chat_body(n=1), ChatCompletionRequest).n == 1
    assert parse_request(chat_body(n=128), ChatCompletionRequest).n == 128


def test_bad_message_role_names_the_path() -> None:
    body = json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "a"}, {"role": "wizard", "content": "b"}]}
    ).encode()
    error = refused(body, ChatCompletionRequest)
    assert error.param == "messages[1].role"
    assert "messages[1].role" in error.message


def test_bad_message_content_names_the_path() -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": 5}]}).encode()
    assert refused(body, ChatCompletionRequest).param == "messages[0].content"


def test_nested_stream_options_type() -> None:
    error = refused(chat_body(stream=True, stream_options={"include_usage": "yes"}), ChatCompletionRequest)
    assert error.param == "stream_options.include_usage"


def test_unknown_fields_accepted() -> None:
    request = parse_request(
        chat_body(some_vendor_flag=True, metadata={"a": 1}, extra_body={"x": 1}), ChatCompletionRequest
    )
    assert request.model == "m"
    assert request.model_extra is not None
    assert request.model_extra["some_vendor_flag"] is True


def test_valid_chat_request() -> None:
    request = parse_request(chat_body(temperature=0.5, stream=True, max_tokens=10), ChatCompletionRequest)
    assert request.temperature == 0.5
    assert request.stream is True
    assert request.max_tokens == 10
    assert request.messages[0].role == "user"


def test_integer_accepted_for_float_field() -> None:
    assert parse_request(chat_body(temperature=1), ChatCompletionRequest).temperature == 1.0


def test_langchain_legacy_body_parses() -> None:
    body: dict[str, Any] = {
        "model": "m",
        "prompt": ["a"],
        "logit_bias": {},
        "seed": None,
        "logprobs": None,
        "temperature": 0.7,
        "top_p": 1,
        "frequency_penalty": 0,
        "presence_penalty": 0,
        "n": 1,
        "max_tokens": 256,
    }
    request = parse_request(json.dumps(body).encode(), CompletionRequest)
    assert request.prompt == ["a"]
    assert request.logit_bias == {}
    assert request.seed is None
    assert request.logprobs is None
    assert request.temperature == 0.7
    assert request.top_p == 1
    assert request.max_tokens == 256


def test_completion_logprobs_above_openai_max() -> None:
    body = json.dumps({"model": "m", "prompt": "x", "logprobs": 6}).encode()
    error = refused(body, CompletionRequest)
    assert error.param == "logprobs"
    assert error.code == "integer_above_max_value"
