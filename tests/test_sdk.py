"""The official `openai` SDK, sync and async, against the proxy on a real socket over the fake TGI.

The fake replays the recorded Llama-3.2 stream (" 1. 2. 3. ... 17", one token per space, number and dot)
followed by an EOS special token, honouring max_new_tokens and stop like TGI does.
"""

from __future__ import annotations

import json

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema

from tests.support import MODEL, Live

pytestmark = pytest.mark.sockets

FULL_TEXT = "".join(f" {i}." for i in range(1, 17)) + " 17"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Count."}]


def test_chat_non_stream(live: Live) -> None:
    completion = live.sdk().chat.completions.create(model=MODEL, messages=MESSAGES)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == FULL_TEXT  # the EOS special token is never text
    assert choice.finish_reason == "stop"  # TGI eos_token
    assert choice.logprobs is None
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 51  # TGI counts the EOS token
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert completion.usage.prompt_tokens > 0


def test_chat_stream_equals_non_stream_at_temperature_zero(live: Live) -> None:
    client = live.sdk()
    whole = client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0, max_tokens=20, stop=["9."])
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, temperature=0, max_tokens=20, stop=["9."], stream=True
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content == " 1. 2. 3. 4. 5. 6. 7"
    assert whole.choices[0].finish_reason == "length"
    assert {c.id for c in chunks} == {chunks[0].id} and {c.created for c in chunks} == {chunks[0].created}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason]
    assert finishes == ["length"]


def test_chat_stop_is_trimmed_and_reported_as_stop(live: Live) -> None:
    completion = live.sdk().chat.completions.create(model=MODEL, messages=MESSAGES, stop="4.")
    assert completion.choices[0].message.content == " 1. 2. 3. "
    assert completion.choices[0].finish_reason == "stop"
    sent = live.fake.requests[-1].body["parameters"]
    assert "4." in sent["stop"] and "<|im_end|>" in sent["stop"]  # request stop plus the template's own


def test_chat_stream_with_usage_and_n(live: Live) -> None:
    stream = live.sdk().chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        n=2,
        max_completion_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage_chunks = [c for c in chunks if not c.choices]
    assert len(usage_chunks) == 1 and chunks[-1] is usage_chunks[0]
    usage = usage_chunks[0].usage
    assert usage is not None and usage.completion_tokens == 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[0].choices[0].index == 0
    for index in (0, 1):
        mine = [c.choices[0] for c in chunks if c.choices and c.choices[0].index == index]
        assert mine[0].delta.role == "assistant"
        assert [m.finish_reason for m in mine if m.finish_reason] == ["length"]
        assert "".join(m.delta.content or "" for m in mine) == " 1. "


def test_chat_logprobs(live: Live) -> None:
    completion = live.sdk().chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        logprobs=True,
        top_logprobs=3,
        max_tokens=6,
    )
    choice = completion.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    entries = choice.logprobs.content
    assert "".join(e.token for e in entries) == choice.message.content
    for entry in entries:
        assert entry.logprob <= 0
        assert entry.bytes == list(entry.token.encode())
        assert len(entry.top_logprobs) == 3


def test_chat_stream_logprobs_cover_their_own_tokens(live: Live) -> None:
    chunks = list(
        live.sdk().chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            logprobs=True,
            max_tokens=6,
            stream=True,
        )
    )
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    tokens = "".join(e.token for c in chunks if c.choices[0].logprobs for e in c.choices[0].logprobs.content or [])
    assert tokens == content == " 1. 2."


async def test_async_chat_stream(live: Live) -> None:
    client = live.async_sdk()
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, max_tokens=3)
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == " 1."
    await client.close()


async def test_async_completions(live: Live) -> None:
    client = live.async_sdk()
    completion = await client.completions.create(model=MODEL, prompt="Count:")
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert completion.choices[0].text == " 1. 2. 3. 4. 5. "  # OpenAI's default of 16 tokens
    assert completion.choices[0].finish_reason == "length"
    assert live.fake.requests[-1].body["parameters"]["max_new_tokens"] == 16
    await client.close()


def test_completions_stream_with_prompts_and_usage(live: Live) -> None:
    chunks = list(
        live.sdk().completions.create(
            model=MODEL,
            prompt=["a b", "c"],
            n=2,
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.object == "text_completion" for c in chunks)
    texts: dict[int, str] = {}
    for chunk in chunks[:-1]:
        texts[chunk.choices[0].index] = texts.get(chunk.choices[0].index, "") + chunk.choices[0].text
    assert texts == {0: " 1.", 1: " 1.", 2: " 1.", 3: " 1."}
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 12
    assert usage.prompt_tokens == 3  # "a b" and "c", each prompt counted once however many choices


def test_completions_echo_and_logprobs(live: Live) -> None:
    completion = live.sdk().completions.create(model=MODEL, prompt="Go:", echo=True, logprobs=2, max_tokens=3)
    choice = completion.choices[0]
    assert choice.text == "Go: 1."
    assert choice.logprobs is not None
    lp = choice.logprobs
    assert lp.tokens is not None and lp.token_logprobs is not None and lp.top_logprobs is not None
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset or [])
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None  # the first prompt token
    assert all(1 <= len(top) <= 3 for top in lp.top_logprobs[1:])


def test_sdk_raises_on_errors(live: Live) -> None:
    client = live.sdk()
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert missing.value.code == "model_not_found"
    assert missing.value.request_id
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, top_logprobs=9, logprobs=True)
    assert bad.value.param == "top_logprobs"
    # ...and the server is still fine afterwards
    assert client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=1).choices


def test_sdk_raises_on_error_event_mid_stream(live: Live) -> None:
    live.fake.error_event_after = 3
    stream = live.sdk().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="boom"):
        for _ in stream:
            pass


def test_models_list_and_retrieve(live: Live) -> None:
    client = live.sdk()
    assert [m.id for m in client.models.list()] == [MODEL]
    assert client.models.retrieve("test-alias").id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_json_response_format_is_sent_as_grammar(live: Live) -> None:
    schema: dict[str, object] = {"type": "object", "properties": {"n": {"type": "integer"}}}
    response_format: ResponseFormatJSONSchema = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    live.sdk().chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        max_tokens=2,
        response_format=response_format,
        extra_body={"top_k": 5, "repetition_penalty": 1.1},
    )
    sent = live.fake.requests[-1].body["parameters"]
    assert sent["grammar"] == {"type": "json", "value": schema}
    assert sent["top_k"] == 5 and sent["repetition_penalty"] == 1.1
    assert json.dumps(sent)  # plain JSON all the way


async def test_async_chat_non_stream_and_completions_stream(live: Live) -> None:
    client = live.async_sdk()
    chat = await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3, temperature=0)
    assert chat.choices[0].message.content == " 1."
    stream = await client.completions.create(model=MODEL, prompt="Count:", max_tokens=3, stream=True)
    assert "".join([c.choices[0].text async for c in stream]) == " 1."
    await client.close()


def test_sdk_stream_helper_accumulates_every_choice(live: Live) -> None:
    # The helper merges deltas by concatenation: a repeated role would read "assistantassistant".
    client = live.sdk()
    with client.chat.completions.stream(model=MODEL, messages=MESSAGES, n=2) as stream:
        final = stream.get_final_completion()
    assert [c.message.role for c in final.choices] == ["assistant", "assistant"]
    assert [c.message.content for c in final.choices] == [FULL_TEXT, FULL_TEXT]
    assert [c.finish_reason for c in final.choices] == ["stop", "stop"]
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=1)
    assert raw.headers["x-request-id"] and raw.parse().choices[0].message.content == " "
