"""Seeded random mutations of valid bodies: whatever a client sends, the answer is a success or a 4xx in
OpenAI's envelope, never a 500 or a traceback."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx

from tests.support import MODEL

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
COMPLETION = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
FIELDS = [
    "model",
    "messages",
    "prompt",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "stream",
    "stream_options",
    "logprobs",
    "top_logprobs",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "echo",
    "best_of",
    "suffix",
    "response_format",
    "user",
    "top_k",
    "repetition_penalty",
    "typical_p",
    "truncate",
    "watermark",
    "grammar",
    "tools",
    "tool_choice",
]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    choices: list[Any] = [
        None,
        True,
        False,
        0,
        1,
        -1,
        2,
        5,
        3.5,
        -0.5,
        1e300,
        2**70,
        "",
        "x",
        "<|im_end|>",
        "日本語",
        [],
        {},
        ["a", "b"],
        [1, 2],
        {"type": "json_object"},
        {"include_usage": True},
    ]
    if depth < 2:
        choices += [[random_value(rng, depth + 1)], {"k": random_value(rng, depth + 1)}]
    return rng.choice(choices)


async def test_random_bodies_never_fail_the_server(client: httpx.AsyncClient) -> None:
    rng = random.Random(20261123)
    for _ in range(400):
        chat = rng.random() < 0.5
        body: dict[str, Any] = dict(CHAT if chat else COMPLETION)
        for _ in range(rng.randint(1, 3)):
            body[rng.choice(FIELDS)] = random_value(rng)
        path = "/v1/chat/completions" if chat else "/v1/completions"
        response = await client.post(path, content=json.dumps(body).encode())
        assert response.status_code in {200, 400, 404}, (body, response.status_code, response.text)
        if response.status_code != 200:
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}, body
            assert "Traceback" not in error["message"]


async def test_pathological_bodies(client: httpx.AsyncClient) -> None:
    nested = b'{"model": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    for body in (nested, b"\xff\xfe\x00", b"", b"null", b'"string"', b"{" * 100000):
        response = await client.post("/v1/chat/completions", content=body)
        assert response.status_code == 400, (body[:20], response.text)
