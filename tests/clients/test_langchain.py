"""langchain-openai against the proxy on a real socket: `ChatOpenAI` (invoke, stream, batch, async stream) and
the legacy completions `OpenAI` class, with the text checked against what the fake TGI generated."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_openai import ChatOpenAI, OpenAI
from pydantic import SecretStr

from tests.support import MODEL, Live

pytestmark = [pytest.mark.clients, pytest.mark.sockets]

KEY = SecretStr("sk-test")
FULL_TEXT = "".join(f" {i}." for i in range(1, 17)) + " 17"


def chat_model(live: Live, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(model=MODEL, base_url=f"{live.url}/v1", api_key=KEY, max_retries=0, **kwargs)


def test_chat_invoke_and_batch(live: Live) -> None:
    model = chat_model(live, max_tokens=3)
    answer = model.invoke("Count.")
    assert isinstance(answer, AIMessage)
    assert answer.content == " 1."
    assert answer.response_metadata["finish_reason"] == "length"
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] == 3
    whole = chat_model(live).invoke([("system", "Be brief."), ("user", "Count.")])
    assert whole.content == FULL_TEXT and whole.response_metadata["finish_reason"] == "stop"
    sent = live.fake.requests_to("/generate")[-1].body["inputs"]
    assert sent.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCount.")

    batch = model.batch(["Count.", "Count again."])
    assert [message.content for message in batch] == [" 1.", " 1."]


def test_chat_stream(live: Live) -> None:
    chunks = list(chat_model(live, max_tokens=7, stream_usage=True).stream("Count."))
    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    assert "".join(str(chunk.content) for chunk in chunks) == " 1. 2. "
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.usage_metadata is not None and merged.usage_metadata["output_tokens"] == 7
    assert live.fake.requests_to("/generate_stream")


async def test_chat_async_stream(live: Live) -> None:
    parts = [str(chunk.content) async for chunk in chat_model(live, max_tokens=3).astream("Count.")]
    assert "".join(parts) == " 1."


def test_legacy_completions_class(live: Live) -> None:
    llm = OpenAI(model=MODEL, base_url=f"{live.url}/v1", api_key=KEY, max_retries=0, max_tokens=5)
    assert llm.invoke("Count:") == " 1. 2"
    assert "".join(llm.stream("Count:")) == " 1. 2"
    assert llm.batch(["a", "b"]) == [" 1. 2", " 1. 2"]
    assert [r.body["inputs"] for r in live.fake.requests_to("/generate_stream")] == ["Count:"]


def test_errors_surface_as_openai_exceptions(live: Live) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        ChatOpenAI(model="no-such-model", base_url=f"{live.url}/v1", api_key=KEY, max_retries=0).invoke("x")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        chat_model(live, logprobs=True, top_logprobs=9).invoke("x")
    assert bad.value.param == "top_logprobs"
