"""Upstream kind `openai`: requests pass through, answers are normalised to OpenAI's exact shapes. The fake
upstream replays recorded TGI Messages API answers (`tests/fixtures/tgi/`, docs/tgi-wire.md §6) on a real socket;
the proxy is driven by the openai SDK and by raw HTTP where the bytes matter."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from fakes.loopback import LoopbackServer
from fakes.openai import FakeOpenAI, sse_from_chunks
from fakes.tgi import FIXTURES_DIR, load_fixture, sse_data
from server.app import create_app
from server.config import Settings

pytestmark = pytest.mark.sockets

MODEL = "mistral"
MESSAGES: Any = [{"role": "user", "content": "What is the answer?"}]


def snapshot(name: str) -> Any:
    return json.loads((FIXTURES_DIR / name).read_text())


def tape(key_prefix: str) -> dict[str, Any]:
    tapes = snapshot("hfjs_tapes_subset_tgi_hf_inference.json")
    entry: dict[str, Any] = next(value for key, value in tapes.items() if key.startswith(key_prefix))
    return entry


@contextlib.contextmanager
def relayed(fake: FakeOpenAI, **model: Any) -> Iterator[str]:
    with LoopbackServer(fake) as upstream:
        config = {
            "name": MODEL,
            "upstream": {"kind": "openai", "url": upstream.url, "model_id": "tgi", "retries": 0},
            **model,
        }
        settings = Settings.model_validate({"models": [config], "server": {"ping_seconds": 5}})
        with LoopbackServer(create_app(settings)) as proxy:
            yield proxy.url


@contextlib.contextmanager
def sdk(fake: FakeOpenAI, **model: Any) -> Iterator[openai.OpenAI]:
    with relayed(fake, **model) as url, openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        yield client


def raw_stream(url: str, path: str, body: dict[str, Any]) -> tuple[bytes, list[dict[str, Any]]]:
    response = httpx.post(f"{url}{path}", json={"model": MODEL, "stream": True, **body}, timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    raw = response.content
    assert raw.endswith(b"data: [DONE]\n\n") and raw.count(b"data: [DONE]") == 1
    events = [orjson.loads(line[6:]) for line in raw.split(b"\n\n") if line.startswith(b"data: {")]
    return raw, events


def assert_chunk_contract(events: list[dict[str, Any]], *, chat: bool, choices: int) -> None:
    assert len({(e["id"], e["created"], e["model"]) for e in events}) == 1
    assert events[0]["id"].startswith("chatcmpl-" if chat else "cmpl-") and events[0]["model"] == MODEL
    assert {e["object"] for e in events} == {"chat.completion.chunk" if chat else "text_completion"}
    finishes = [c for e in events for c in e["choices"] if c["finish_reason"] is not None]
    assert sorted(c["index"] for c in finishes) == list(range(choices))  # exactly one finish per choice
    assert all(c["finish_reason"] in ("stop", "length", "tool_calls") for c in finishes)
    if chat:
        roles = [c for e in events for c in e["choices"] if "role" in c["delta"]]
        assert [c["index"] for c in roles] == list(range(choices))  # the role once per choice, first
        assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def tape_text(body: bytes) -> str:
    chunks = [orjson.loads(data) for data in sse_data(body) if data != "[DONE]"]
    return "".join(chunk["choices"][0]["delta"]["content"] for chunk in chunks)


def test_a_recorded_tgi3_chat_stream_is_relayed_in_openai_shape() -> None:
    recorded = load_fixture("hfjs_tape_chat_stream_mistral_tgi3.0.1.sse")
    with relayed(FakeOpenAI(stream_body=recorded)) as url:
        _, events = raw_stream(url, "/v1/chat/completions", {"messages": MESSAGES})
    assert_chunk_contract(events, chat=True, choices=1)
    text = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    assert text == tape_text(recorded)
    assert events[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert all("usage" not in e for e in events)  # not asked for


def test_a_legacy_stream_without_done_and_with_eos_text_is_completed() -> None:
    recorded = load_fixture("hfjs_tape_chat_stream_mistral_tgi2.0.1_legacy.sse")
    assert b"[DONE]" not in recorded and b"</s>" in recorded
    with relayed(FakeOpenAI(stream_body=recorded)) as url:
        raw, events = raw_stream(url, "/v1/chat/completions", {"messages": MESSAGES})
    assert b"</s>" not in raw and b"eos_token" not in raw and b"text_completion" not in raw
    assert_chunk_contract(events, chat=True, choices=1)
    assert events[-1]["choices"][0]["finish_reason"] == "stop"


def test_include_usage_gives_usage_null_on_chunks_and_the_upstream_counts_last() -> None:
    recorded = snapshot("tgi_snapshot_chat_stream_include_usage.json")
    fake = FakeOpenAI(stream_body=sse_from_chunks(recorded))
    with sdk(fake) as client:
        chunks = list(
            client.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )
    assert fake.requests[0]["stream_options"] == {"include_usage": True}
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (40, 10)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]


def test_completions_for_many_prompts_keep_each_choice_apart() -> None:
    recorded = snapshot("tgi_snapshot_completions_many_prompts_stream.json")
    prompts = ["Say", "Hello", "The capital of France is", "def f():"]
    with relayed(FakeOpenAI(stream_body=sse_from_chunks(recorded))) as url:
        _, events = raw_stream(url, "/v1/completions", {"prompt": prompts, "max_tokens": 10})
    assert_chunk_contract(events, chat=False, choices=4)
    for index in range(4):
        expected = "".join(
            c["choices"][0]["text"] for c in recorded if c["choices"] and c["choices"][0]["index"] == index
        )
        got = "".join(c["text"] for e in events for c in e["choices"] if c["index"] == index)
        assert got == expected
    assert all(c["finish_reason"] != "" for e in events for c in e["choices"])


def test_a_whole_answer_with_tool_calls_passes_them_through() -> None:
    recorded = snapshot("tgi_snapshot_chat_tools_nostream.json")
    fake = FakeOpenAI(answer=recorded)
    tools: Any = [{"type": "function", "function": {"name": "get_current_weather", "parameters": {"type": "object"}}}]
    with sdk(fake) as client:
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=tools, tool_choice="auto")
    assert fake.requests[0]["tools"] == tools and fake.requests[0]["tool_choice"] == "auto"
    assert answer.id.startswith("chatcmpl-") and answer.object == "chat.completion" and answer.model == MODEL
    calls = answer.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == "get_current_weather"  # type: ignore[union-attr]
    assert answer.usage is not None and answer.usage.prompt_tokens == 501


def test_a_recorded_tgi2_whole_answer_is_renamed() -> None:
    recorded = json.loads(tape("5644ae129186")["response"]["body"])
    assert recorded["object"] == "text_completion" and recorded["id"] == ""
    with sdk(FakeOpenAI(answer=recorded)) as client:
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.choices[0].message.content == recorded["choices"][0]["message"]["content"]
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_the_request_goes_through_with_model_defaults_and_stops() -> None:
    fake = FakeOpenAI(answer=snapshot("tgi_snapshot_chat_tools_nostream.json"))
    with sdk(fake, stop=["###"], defaults={"temperature": 0.2, "max_tokens": 7}) as client:
        client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=3,
            stop="END",
            presence_penalty=0.5,  # refused for TGI's native API, which has no such parameter; fine here
            logit_bias={"5": 1},
            extra_body={"top_k": 5, "custom": [1]},
        )
    sent = fake.requests[0]
    assert sent["model"] == "tgi" and sent["messages"] == MESSAGES and sent["path"] == "/v1/chat/completions"
    assert sent["max_tokens"] == 3 and sent["temperature"] == 0.2  # the client's value wins over the default
    assert sent["stop"] == ["END", "###"] and sent["top_k"] == 5 and sent["custom"] == [1]
    assert sent["presence_penalty"] == 0.5 and sent["logit_bias"] == {"5": 1}


def chat_chunks(texts: list[str], reason: str) -> list[dict[str, Any]]:
    return [
        {
            "id": "",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}],
        }
        for text in texts
    ] + [{"id": "", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}]


def test_stop_text_left_by_the_upstream_is_trimmed_across_chunks() -> None:
    fake = FakeOpenAI(stream_body=sse_from_chunks(chat_chunks(["Hello", " wo", "r", "ld and more"], "stop_sequence")))
    with sdk(fake) as client:
        chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stop=["world"], stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Hello " and chunks[-1].choices[0].finish_reason == "stop"
        fake.answer = {
            "choices": [{"index": 0, "message": {"content": "Hello world"}, "finish_reason": "stop_sequence"}]
        }
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, stop=["world"])
        assert answer.choices[0].message.content == "Hello " and answer.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("status", "body", "expected", "param"),
    [
        (
            422,
            {"error": "Input validation error: `temperature` must be strictly positive", "error_type": "validation"},
            400,
            "temperature",
        ),
        (
            400,
            {"error": {"message": "bad tools", "type": "invalid_request_error", "param": "tools", "code": None}},
            400,
            "tools",
        ),
        (
            400,
            {"error": {"message": "This model's maximum context length is 8 tokens.", "param": None, "code": None}},
            400,
            "messages",
        ),
        (429, {"error": "Model is overloaded", "error_type": "overloaded"}, 429, None),
    ],
)
def test_upstream_errors_in_either_shape_keep_openai_meaning(
    status: int, body: dict[str, Any], expected: int, param: str | None
) -> None:
    with relayed(FakeOpenAI(status=status, answer=body)) as url:
        for stream in (False, True):
            response = httpx.post(
                f"{url}/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES, "stream": stream}, timeout=10
            )
            assert response.status_code == expected, response.text
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["param"] == param


def test_an_error_event_first_is_an_http_error_and_later_an_error_event() -> None:
    failure = {"error": {"message": "Input validation error: boom", "http_status_code": 422}}
    with relayed(FakeOpenAI(stream_body=sse_from_chunks([failure]))) as url:
        response = httpx.post(
            f"{url}/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES, "stream": True}, timeout=10
        )
        assert response.status_code == 400 and "boom" in response.json()["error"]["message"]
    late = chat_chunks(["Hi"], "stop")[:1] + [
        {"error": "Request failed during generation: x", "error_type": "generation"}
    ]
    with relayed(FakeOpenAI(stream_body=sse_from_chunks(late))) as url:
        raw, events = raw_stream(url, "/v1/chat/completions", {"messages": MESSAGES})
    assert events[-1]["error"]["code"] == "upstream_generation_error"
    assert b'"content":"Hi"' in raw


def test_a_stream_that_ends_without_a_finish_is_an_error_event() -> None:
    with relayed(FakeOpenAI(stream_body=sse_from_chunks(chat_chunks(["Hi", "!"], "stop")[:2], done=False))) as url:
        _, events = raw_stream(url, "/v1/chat/completions", {"messages": MESSAGES})
    assert "ended before every choice finished" in events[-1]["error"]["message"]


def test_a_client_leaving_closes_the_relayed_stream() -> None:
    fake = FakeOpenAI(stream_body=sse_from_chunks(chat_chunks(["tick"] * 200, "length")), chunk_delay=0.02)
    with relayed(fake) as url:
        with httpx.stream(
            "POST", f"{url}/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES, "stream": True}
        ) as response:
            for line in response.iter_lines():
                if "tick" in line:
                    break
        for _ in range(200):
            if fake.disconnects:
                break
            time.sleep(0.01)
    assert fake.disconnects == 1
