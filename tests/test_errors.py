"""Every failure reaches the client in OpenAI's envelope with the right status, `param` and headers."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from fakes.loopback import LoopbackServer
from fakes.tgi import FakeTGI
from server.app import create_app
from tests.support import MODEL, SettingsFactory

CHAT = "/v1/chat/completions"


@pytest.fixture
def upstream_options() -> dict[str, Any]:
    """Each failure is reported as the upstream gave it: retries are `tests/test_resilience.py`'s subject."""
    return {"retries": 0}


MESSAGES = [{"role": "user", "content": "hi"}]


def assert_envelope(response: httpx.Response, status: int, **expected: object) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    for key, value in expected.items():
        assert error[key] == value, error
    return dict(error)


def sse_events(body: str) -> list[str]:
    return [line.removeprefix("data: ") for line in body.split("\n\n") if line.startswith("data: ")]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"{not json", None, None),
        (b"[1, 2]", None, None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model", "missing_required_parameter"),
        (b'{"model": "test-model"}', "messages", "missing_required_parameter"),
        (b'{"model": "test-model", "messages": []}', "messages", "empty_array"),
        (b'{"model": "test-model", "messages": [{"role": "wizard", "content": "x"}]}', "messages[0].role", None),
        (b'{"model": "test-model", "messages": [{"role": "user", "content": 5}]}', "messages[0].content", None),
        (
            b'{"model": "test-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
            "max_tokens",
            "integer_below_min_value",
        ),
        (
            b'{"model": "test-model", "messages": [{"role": "user", "content": "x"}], "temperature": 2.5}',
            "temperature",
            "decimal_above_max_value",
        ),
        (b'{"model": "test-model", "messages": [{"role": "user", "content": "x"}], "n": "2"}', "n", "invalid_type"),
        (b'{"model": "test-model", "messages": [{"role": "user", "content": "x"}], "top_p": 1.5}', "top_p", None),
        (b'{"model": "test-model", "messages": [{"role": "user", "content": "x"}], "n": 129}', "n", None),
        (
            b'{"model": "test-model", "messages": [{"role": "user", "content": "x"}], "frequency_penalty": -3}',
            "frequency_penalty",
            None,
        ),
        (
            b'{"model": "test-model", "messages": [{"role": "user", "content": "x"}], "presence_penalty": 2.5}',
            "presence_penalty",
            None,
        ),
        (
            b'{"model": "test-model", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"5": 101}}',
            "logit_bias.5",
            None,
        ),
        (
            b'{"model": "test-model", "messages": [{"role": "user", "content": "x"}], "stop": ["a","b","c","d","e"]}',
            "stop",
            None,
        ),
        (
            b'{"model": "test-model", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"1": 5}}',
            "logit_bias",
            None,
        ),
        (
            b'{"model": "test-model", "messages": [{"role": "user", "content": "x"}], "presence_penalty": 0.5}',
            "presence_penalty",
            None,
        ),
        (
            b'{"model": "test-model", "messages": [{"role": "user", "content": "x"}], "stream_options": '
            b'{"include_usage": true}}',
            "stream_options",
            None,
        ),
        (
            b'{"model": "test-model", "messages": [{"role": "user", "content": [{"type": "image_url", '
            b'"image_url": {"url": "x"}}]}]}',
            "messages",
            None,
        ),
    ],
)
async def test_bad_requests_are_400_with_param(client: httpx.AsyncClient, body: bytes, param: str, code: str) -> None:
    response = await client.post(CHAT, content=body, headers={"content-type": "application/json"})
    error = assert_envelope(response, 400, type="invalid_request_error", param=param)
    if code is not None:
        assert error["code"] == code


async def test_neutral_values_and_unknown_fields_are_accepted(client: httpx.AsyncClient, fake_tgi: FakeTGI) -> None:
    body = {
        "model": MODEL,
        "messages": MESSAGES,
        "max_tokens": 2,
        "logit_bias": {},
        "presence_penalty": 0,
        "seed": None,
        "logprobs": None,
        "top_p": 1,
        "user": "u",
        "store": False,
        "metadata": {"x": "y"},
        "some_future_field": [1],
    }
    response = await client.post(CHAT, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == " 1"
    sent = fake_tgi.requests[-1].body["parameters"]
    assert "top_p" not in sent and "seed" not in sent and sent["do_sample"] is True


async def test_unknown_model_and_route(client: httpx.AsyncClient) -> None:
    response = await client.post(CHAT, json={"model": "gpt-4o", "messages": MESSAGES})
    error = assert_envelope(response, 404, code="model_not_found", param="model")
    assert error["message"] == "The model `gpt-4o` does not exist or you do not have access to it."
    assert_envelope(await client.get("/v1/models/gpt-4o"), 404, code="model_not_found")
    error = assert_envelope(await client.post("/v1/embeddings", json={}), 404, code="unknown_url", param=None)
    assert error["message"] == "Invalid URL (POST /v1/embeddings)"  # OpenAI's words for a path it does not serve
    error = assert_envelope(await client.get("/v1/nothing-here?x=1"), 404, code="unknown_url")
    assert error["message"] == "Invalid URL (GET /v1/nothing-here)"
    error = assert_envelope(await client.get(CHAT), 405, code="method_not_allowed")
    assert error["message"] == f"Method not allowed (GET {CHAT}); this path accepts POST"


async def test_completions_specific_params(client: httpx.AsyncClient) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"prompt": "x", "logprobs": 6}, "logprobs"),
        ({"prompt": "x", "suffix": "y"}, "suffix"),
        ({"prompt": "x", "best_of": 3}, "best_of"),
        ({"prompt": "x", "best_of": 2, "stream": True}, "best_of"),
        ({"prompt": ["x"] * 20, "n": 10}, "prompt"),
    ]
    for extra, param in cases:
        response = await client.post("/v1/completions", json={"model": MODEL, **extra})
        assert_envelope(response, 400, param=param)


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    mine = await client.get("/v1/models", headers={"x-request-id": "abc-123"})
    assert mine.headers["x-request-id"] == "abc-123"
    first, second = await client.get("/health"), await client.get("/health")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_oversize_body_is_413(fake_tgi: FakeTGI, make_settings: SettingsFactory) -> None:
    app = create_app(
        make_settings(server={"max_body_bytes": 2048}), upstream_transport=httpx.ASGITransport(fake_tgi.app)
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as http:
        big = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 4096}]}
        assert_envelope(await http.post(CHAT, json=big), 413, type="invalid_request_error")


@pytest.mark.parametrize(
    ("status", "body", "expected_status", "expected_code"),
    [
        (
            422,
            {"error": "Input validation error: `top_k` must be strictly positive", "error_type": "validation"},
            400,
            "upstream_validation_error",
        ),
        (429, {"error": "Model is overloaded", "error_type": "overloaded"}, 429, "rate_limit_exceeded"),
        (424, {"error": "Request failed during generation: CUDA", "error_type": "generation"}, 500, None),
        (503, {"error": "Model is currently loading", "estimated_time": 20}, 503, "model_loading"),
        (500, "plain text failure", 500, None),
        (401, "", 502, "upstream_auth"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_http_errors_are_mapped(
    client: httpx.AsyncClient,
    fake_tgi: FakeTGI,
    status: int,
    body: Any,
    expected_status: int,
    expected_code: str | None,
    stream: bool,
) -> None:
    fake_tgi.fail_status = status
    fake_tgi.fail_body = body
    response = await client.post(CHAT, json={"model": MODEL, "messages": MESSAGES, "stream": stream, "max_tokens": 3})
    error = assert_envelope(response, expected_status)
    if expected_code is not None:
        assert error["code"] == expected_code
    if expected_status in (429, 503):
        assert float(response.headers["retry-after"]) > 0
    if expected_status == 500:
        assert response.headers["x-should-retry"] == "false"


async def test_upstream_validation_error_names_openai_param(client: httpx.AsyncClient, fake_tgi: FakeTGI) -> None:
    fake_tgi.max_total_tokens = 8
    response = await client.post(CHAT, json={"model": MODEL, "messages": MESSAGES, "max_tokens": 50})
    assert_envelope(response, 400, code="context_length_exceeded", param="messages")
    response = await client.post("/v1/completions", json={"model": MODEL, "prompt": "a", "max_tokens": 50})
    assert_envelope(response, 400, code="context_length_exceeded", param="prompt")


async def test_validation_error_event_before_first_token_is_an_http_error(client: httpx.AsyncClient) -> None:
    # TGI reports stream validation errors as a 200 SSE body with one error event (docs/tgi-wire.md §3).
    response = await client.post(
        CHAT, json={"model": MODEL, "messages": MESSAGES, "stream": True, "top_k": 0, "max_tokens": 3}
    )
    assert_envelope(response, 400, param="top_k")


async def test_error_event_mid_stream_then_done(client: httpx.AsyncClient, fake_tgi: FakeTGI) -> None:
    fake_tgi.error_event_after = 2
    response = await client.post(CHAT, json={"model": MODEL, "messages": MESSAGES, "stream": True})
    assert response.status_code == 200
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    error = orjson.loads(events[-2])["error"]
    assert set(error) == {"message", "type", "param", "code"} and "boom" in error["message"]
    assert orjson.loads(events[1])["choices"][0]["delta"]["content"] == " "


async def test_abrupt_eof_mid_stream_is_an_error_event(client: httpx.AsyncClient, fake_tgi: FakeTGI) -> None:
    fake_tgi.eof_after = 3
    response = await client.post(CHAT, json={"model": MODEL, "messages": MESSAGES, "stream": True})
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert orjson.loads(events[-2])["error"]["code"] == "incomplete_generation_stream"
    assert not any('"finish_reason":"' in event for event in events)


async def test_unreachable_upstream_is_502(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings("http://127.0.0.1:9"))  # the discard port: nothing listens
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as http:
        for stream in (False, True):
            response = await http.post(CHAT, json={"model": MODEL, "messages": MESSAGES, "stream": stream})
            assert_envelope(response, 502, code="upstream_unreachable")
        # /v1/models never needs the upstream
        assert (await http.get("/v1/models")).status_code == 200


@pytest.mark.sockets
async def test_upstream_timeout_is_504(fake_tgi: FakeTGI, make_settings: SettingsFactory) -> None:
    fake_tgi.headers_delay = 5
    with LoopbackServer(fake_tgi.app) as upstream:
        settings = make_settings(upstream={"kind": "tgi", "url": upstream.url, "first_token_timeout": 0.3})
        app = create_app(settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as http:
            response = await http.post(CHAT, json={"model": MODEL, "messages": MESSAGES, "max_tokens": 2})
            assert_envelope(response, 504, code="upstream_timeout")


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [WEATHER_TOOL]}, "tools"),
        ({"tools": [WEATHER_TOOL], "tool_choice": "auto"}, "tool_choice"),
        ({"tools": [WEATHER_TOOL], "tool_choice": "required"}, "tool_choice"),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
            "tool_choice",
        ),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"functions": [WEATHER_TOOL["function"]]}, "functions"),
        ({"functions": [WEATHER_TOOL["function"]], "function_call": {"name": "get_weather"}}, "function_call"),
        ({"audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"]}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"verbosity": "low"}, "verbosity"),
        ({"web_search_options": {}}, "web_search_options"),
    ],
)
async def test_fields_a_translated_model_cannot_honour_are_refused_by_name(
    client: httpx.AsyncClient, fake_tgi: FakeTGI, fields: dict[str, Any], param: str
) -> None:
    """Accepted and dropped, a tool or an audio request would be answered with plain text as if honoured
    (LangChain's `with_structured_output(method="function_calling")` then returns None)."""
    response = await client.post(CHAT, json={"model": MODEL, "messages": MESSAGES, **fields})
    error = assert_envelope(response, 400, type="invalid_request_error", param=param)
    assert "kind `tgi`" in error["message"]
    assert fake_tgi.requests == []  # refused before any upstream call


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": [WEATHER_TOOL], "tool_choice": "none"},
        {"functions": [WEATHER_TOOL["function"]], "function_call": "none"},
        {"tools": [], "parallel_tool_calls": False, "modalities": ["text"], "audio": None, "store": False},
        {"metadata": {"a": "b"}, "service_tier": "auto", "prompt_cache_key": "k", "safety_identifier": "s"},
    ],
)
async def test_neutral_tool_and_bookkeeping_fields_are_served_without_tools(
    client: httpx.AsyncClient, fake_tgi: FakeTGI, fields: dict[str, Any]
) -> None:
    """`tool_choice: "none"` is honoured by offering no tools: the rendered prompt names none of them."""
    response = await client.post(CHAT, json={"model": MODEL, "messages": MESSAGES, "max_tokens": 2, **fields})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] in {"stop", "length"}
    (generate,) = [request for request in fake_tgi.requests if request.path.startswith("/generate")]
    assert "get_weather" not in generate.body["inputs"]
