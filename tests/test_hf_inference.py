"""Upstream kind `hf-inference`: the HF router's native text-generation route, against a fake router (built
from the recorded tapes) in front of the fake TGI, on real sockets, through the openai SDK."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from fakes.hf_router import FakeHFRouter
from fakes.loopback import LoopbackServer
from fakes.tgi import FakeTGI, load_fixture, sse_json
from server.app import create_app
from server.config import HF_INFERENCE_URL, Settings, UpstreamConfig

pytestmark = pytest.mark.sockets

MODEL = "llama-3.2-3b"
HUB_ID = "meta-llama/Llama-3.2-3B-Instruct"
TOKEN = "hf_test_token"


@dataclass
class Router:
    fake: FakeHFRouter
    tgi: FakeTGI
    sdk: openai.OpenAI


@contextlib.contextmanager
def router(**upstream: Any) -> Iterator[Router]:
    tgi = FakeTGI()
    fake = FakeHFRouter(tgi, HUB_ID, token=TOKEN)
    with LoopbackServer(fake) as served:
        config = {
            "kind": "hf-inference",
            "url": f"{served.url}/hf-inference",
            "model_id": HUB_ID,
            "token": TOKEN,
            "backoff": 0.02,
            **upstream,
        }
        settings = Settings.model_validate({"models": [{"name": MODEL, "upstream": config, "chat_template": "llama3"}]})
        with LoopbackServer(create_app(settings)) as proxy:
            with openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="unused", max_retries=0) as sdk:
                yield Router(fake, tgi, sdk)


def test_default_base_url_and_model_id() -> None:
    config = UpstreamConfig.model_validate({"kind": "hf-inference"})
    assert config.addresses == [HF_INFERENCE_URL] and config.model_id is None


@pytest.mark.parametrize("stream", [False, True])
def test_chat_through_the_router_route_with_the_token(stream: bool) -> None:
    with router() as hf:
        messages: Any = [{"role": "user", "content": "Count"}]
        if stream:
            chunks = list(hf.sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=4, stream=True))
            text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
            assert chunks[-1].choices[0].finish_reason == "length"
        else:
            answer = hf.sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
            text = answer.choices[0].message.content or ""
            assert answer.choices[0].finish_reason == "length" and answer.usage is not None
        assert text == "".join(hf.tgi.script[:4])
        [call] = hf.fake.calls
        assert call["authorization"] == f"Bearer {TOKEN}"
        body: Any = call["body"]
        assert body["stream"] is stream and body["parameters"]["return_full_text"] is False
        assert body["inputs"].startswith("<|start_header_id|>user")


def test_the_recorded_router_stream_is_relayed() -> None:
    tape = load_fixture("hfjs_tape_generate_stream_llama32_3b_tgi3.sse")
    with router() as hf:
        hf.tgi.replay_sse = tape
        chunks = list(hf.sdk.completions.create(model=MODEL, prompt="x", max_tokens=50, stream=True))
    recorded = sse_json(tape)
    expected = "".join(event["token"]["text"] for event in recorded if not event["token"]["special"])
    assert "".join(chunk.choices[0].text for chunk in chunks if chunk.choices) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_cold_model_is_waited_for_and_retried() -> None:
    with router() as hf:
        hf.fake.loading_times = 2
        answer = hf.sdk.completions.create(model=MODEL, prompt="x", max_tokens=2)
        assert answer.choices[0].text == "".join(hf.tgi.script[:2])
        assert len(hf.fake.calls) == 3


def test_a_model_still_loading_after_the_retries_is_503_with_its_estimate() -> None:
    with router(retries=1) as hf:
        hf.fake.loading_times, hf.fake.estimated_time = 5, 0.01
        with pytest.raises(openai.InternalServerError) as failure:
            hf.sdk.completions.create(model=MODEL, prompt="x", max_tokens=2)
        assert failure.value.status_code == 503 and failure.value.code == "model_loading"
        assert failure.value.response.headers["retry-after"] == "1"
        assert len(hf.fake.calls) == 2


def test_exhausted_credits_are_429_insufficient_quota_and_not_retried() -> None:
    with router() as hf:
        hf.fake.refuse_status = 402
        with pytest.raises(openai.RateLimitError) as failure:
            hf.sdk.completions.create(model=MODEL, prompt="x", max_tokens=2, stream=True)
        assert failure.value.code == "insufficient_quota" and "credits" in failure.value.message
        assert len(hf.fake.calls) == 1


def test_router_rate_limits_are_retried_then_429() -> None:
    with router(retries=2) as hf:
        hf.fake.refuse_status = 429
        with pytest.raises(openai.RateLimitError) as failure:
            hf.sdk.completions.create(model=MODEL, prompt="x", max_tokens=2)
        assert failure.value.code == "rate_limit_exceeded"
        assert len(hf.fake.calls) == 3


def test_a_wrong_token_or_unknown_model_is_reported_without_the_token() -> None:
    with router(token="hf_wrong_token") as hf:
        with pytest.raises(openai.APIStatusError) as failure:
            hf.sdk.completions.create(model=MODEL, prompt="x", max_tokens=2)
        assert failure.value.status_code == 502 and failure.value.code == "upstream_auth"
        assert "hf_wrong_token" not in failure.value.response.text
    with router(model_id="org/missing") as hf:
        with pytest.raises(openai.APIStatusError) as failure:
            hf.sdk.completions.create(model=MODEL, prompt="x", max_tokens=2)
        assert failure.value.status_code == 502 and "does not exist" in failure.value.message
