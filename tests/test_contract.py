"""Items of the conformance checklist (docs/checklist.md) checked on raw HTTP, where the SDK would hide the detail."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import orjson

from fakes.tgi import FakeTGI
from server.app import create_app
from tests.support import MODEL, SettingsFactory

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Count."}]


def events(body: bytes) -> list[Any]:
    parts = [part.removeprefix(b"data: ") for part in body.split(b"\n\n") if part.startswith(b"data: ")]
    return [part.decode() if part == b"[DONE]" else orjson.loads(part) for part in parts]


async def test_chat_response_shape(client: httpx.AsyncClient) -> None:  # items 1, 2, 7
    response = await client.post(CHAT, json={"model": MODEL, "messages": MESSAGES, "max_tokens": 3})
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int) and abs(body["created"] - time.time()) < 60
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": " 1.", "refusal": None}
    assert "logprobs" in choice and choice["logprobs"] is None
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_n_choices_in_order_with_distinct_seeds(client: httpx.AsyncClient, fake_tgi: FakeTGI) -> None:  # 3
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 2, "n": 3, "seed": 7}
    response = await client.post(CHAT, json=body)
    assert [c["index"] for c in response.json()["choices"]] == [0, 1, 2]
    seeds = sorted(r.body["parameters"]["seed"] for r in fake_tgi.requests_to("/generate"))
    assert seeds == [7, 8, 9]
    assert response.json()["usage"]["completion_tokens"] == 6


async def test_smaller_of_max_tokens_and_max_completion_tokens(client: httpx.AsyncClient, fake_tgi: FakeTGI) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 9, "max_completion_tokens": 4}  # item 8
    await client.post(CHAT, json=body)
    assert fake_tgi.requests_to("/generate")[-1].body["parameters"]["max_new_tokens"] == 4


async def test_chat_default_max_tokens_is_what_the_context_leaves(client: httpx.AsyncClient, fake_tgi: FakeTGI) -> None:
    fake_tgi.max_total_tokens = 30
    response = await client.post(CHAT, json={"model": MODEL, "messages": MESSAGES})
    sent = fake_tgi.requests_to("/generate")[-1].body["parameters"]["max_new_tokens"]
    prompt_tokens = response.json()["usage"]["prompt_tokens"]
    assert sent == 30 - prompt_tokens
    assert response.json()["choices"][0]["finish_reason"] == "length"


async def test_message_forms(client: httpx.AsyncClient, fake_tgi: FakeTGI) -> None:  # item 9
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is"}, {"type": "text", "text": "the time?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "now", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "noon"},
    ]
    response = await client.post(CHAT, json={"model": MODEL, "messages": messages, "max_tokens": 2})
    assert response.status_code == 200, response.text
    prompt = fake_tgi.requests_to("/generate")[-1].body["inputs"]
    assert "<|im_start|>system\nBe brief.<|im_end|>" in prompt
    assert "What is\nthe time?" in prompt and "noon" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


async def test_top_logprobs_zero_gives_empty_alternatives(client: httpx.AsyncClient) -> None:  # item 11
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 3, "logprobs": True, "top_logprobs": 0}
    content = (await client.post(CHAT, json=body)).json()["choices"][0]["logprobs"]["content"]
    assert len(content) == 3 and all(entry["top_logprobs"] == [] for entry in content)


async def test_completions_prompts_times_n_grouped_per_prompt(client: httpx.AsyncClient) -> None:  # 13, 14
    body = {"model": MODEL, "prompt": ["one", "two two"], "n": 2, "max_tokens": 1, "seed": 1}
    response = (await client.post("/v1/completions", json=body)).json()
    assert response["object"] == "text_completion" and response["id"].startswith("cmpl-")
    assert [c["index"] for c in response["choices"]] == [0, 1, 2, 3]
    assert all(set(c) == {"text", "index", "logprobs", "finish_reason"} for c in response["choices"])
    assert response["usage"]["prompt_tokens"] == 3  # 1 + 2, each prompt once


async def test_echo_with_logprobs_starts_with_prompt_tokens(client: httpx.AsyncClient) -> None:  # item 17
    body = {"model": MODEL, "prompt": "Go on", "echo": True, "logprobs": 1, "max_tokens": 3}
    choice = (await client.post("/v1/completions", json=body)).json()["choices"][0]
    assert choice["text"] == "Go on 1."
    logprobs = choice["logprobs"]
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    assert len({len(logprobs[key]) for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset")}) == 1
    assert logprobs["text_offset"] == sorted(logprobs["text_offset"])


async def test_stream_without_stream_options_has_no_usage(client: httpx.AsyncClient) -> None:  # item 24
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 3, "stream": True}
    chunks = events((await client.post(CHAT, json=body)).content)
    assert chunks[-1] == "[DONE]"
    assert all(chunk["choices"] and "usage" not in chunk for chunk in chunks[:-1])


async def test_completions_stream_chunks_have_the_non_stream_shape(client: httpx.AsyncClient) -> None:  # 26
    body = {"model": MODEL, "prompt": "x", "max_tokens": 2, "stream": True, "stream_options": {"include_usage": True}}
    chunks = events((await client.post("/v1/completions", json=body)).content)
    assert chunks[-1] == "[DONE]"
    assert all(chunk["object"] == "text_completion" for chunk in chunks[:-1])
    for chunk in chunks[:-2]:
        assert set(chunk["choices"][0]) == {"text", "index", "logprobs", "finish_reason"} and chunk["usage"] is None
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["completion_tokens"] == 2


async def test_sdk_headers_are_ignored(client: httpx.AsyncClient) -> None:  # item 44
    headers = {
        "Accept": "application/json",
        "X-Stainless-Lang": "python",
        "X-Stainless-Retry-Count": "0",
        "OpenAI-Organization": "org",
        "OpenAI-Project": "proj",
        "Idempotency-Key": "k",
    }
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 1, "stream": True}
    response = await client.post(CHAT, json=body, headers=headers)
    assert response.headers["content-type"].startswith("text/event-stream")


async def test_langchain_and_llamaindex_default_bodies(client: httpx.AsyncClient) -> None:  # item 45
    langchain_legacy = {
        "model": MODEL,
        "prompt": ["Tell me a joke"],
        "temperature": 0.7,
        "top_p": 1,
        "frequency_penalty": 0,
        "presence_penalty": 0,
        "n": 1,
        "logit_bias": {},
        "seed": None,
        "logprobs": None,
        "max_tokens": 4,
    }
    assert (await client.post("/v1/completions", json=langchain_legacy)).status_code == 200
    llamaindex = {"model": MODEL, "prompt": "Hi", "temperature": 0.1, "stream": False, "logprobs": None}
    assert (await client.post("/v1/completions", json=llamaindex)).status_code == 200
    langchain_chat = {"model": MODEL, "messages": MESSAGES, "stream": False, "max_completion_tokens": 2, "n": 1}
    assert (await client.post(CHAT, json=langchain_chat)).status_code == 200


async def test_special_tokens_are_never_text(client: httpx.AsyncClient, fake_tgi: FakeTGI) -> None:  # item 4
    fake_tgi.script = ["Hi", "!"]
    whole = await client.post(CHAT, json={"model": MODEL, "messages": MESSAGES})
    assert whole.json()["choices"][0]["message"]["content"] == "Hi!"
    assert whole.json()["choices"][0]["finish_reason"] == "stop"
    streamed = await client.post(CHAT, json={"model": MODEL, "messages": MESSAGES, "stream": True})
    assert b"</s>" not in streamed.content
    chunks = events(streamed.content)[:-1]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hi!"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_legacy_tgi_framing_and_crlf(client: httpx.AsyncClient, fake_tgi: FakeTGI) -> None:
    fake_tgi.framing = "legacy"  # TGI <= 2.0: `data:` without a space and no `index`
    fake_tgi.line_ending = "\r\n"
    fake_tgi.keepalive_every = 2
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 4, "stream": True}
    chunks = events((await client.post(CHAT, json=body)).content)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert text == " 1. " and chunks[-2]["choices"][0]["finish_reason"] == "length"


async def test_model_alias_resolves_to_the_model(client: httpx.AsyncClient) -> None:  # item 43
    models = (await client.get("/v1/models")).json()
    assert models == {
        "object": "list",
        "data": [
            {"id": MODEL, "object": "model", "created": models["data"][0]["created"], "owned_by": "hf-openai-proxy"}
        ],
    }
    response = await client.post(CHAT, json={"model": "test-alias", "messages": MESSAGES, "max_tokens": 1})
    assert response.json()["model"] == MODEL
    assert (await client.get("/models")).json() == models


async def test_openapi_document_is_complete(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    chat_body = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]
    assert "messages" in chat_body["schema"]["properties"]
    text = orjson.dumps(document).decode()
    referenced = set(re.findall(r'"#/components/schemas/([^"]+)"', text))
    assert referenced <= set(document["components"]["schemas"])
    assert (await client.get("/docs")).status_code == 200


async def test_conversation_the_template_cannot_render_is_400(
    fake_tgi: FakeTGI, make_settings: SettingsFactory
) -> None:
    app = create_app(make_settings(chat_template="llama2"), upstream_transport=httpx.ASGITransport(fake_tgi.app))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as http:
        messages = [{"role": "user", "content": "a"}, {"role": "system", "content": "late system"}]
        response = await http.post(CHAT, json={"model": MODEL, "messages": messages})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["param"] == "messages" and "llama2" in error["message"]
        assert not fake_tgi.requests_to("/generate")


async def test_model_without_template_serves_completions_only(
    fake_tgi: FakeTGI, make_settings: SettingsFactory
) -> None:
    app = create_app(make_settings(chat_template=None), upstream_transport=httpx.ASGITransport(fake_tgi.app))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test") as http:
        chat = await http.post(CHAT, json={"model": MODEL, "messages": MESSAGES})
        assert chat.status_code == 400 and "chat_template" in chat.json()["error"]["message"]
        completion = await http.post("/v1/completions", json={"model": MODEL, "prompt": "a", "max_tokens": 1})
        assert completion.status_code == 200
