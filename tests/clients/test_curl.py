"""`curl -N`, as the README shows it, against the proxy on a real socket: SSE streams for both endpoints,
a whole answer, and an error body in OpenAI's envelope."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.support import MODEL, Live

pytestmark = [pytest.mark.clients, pytest.mark.sockets]


def curl(live: Live, path: str, body: dict[str, Any]) -> tuple[int, str]:
    command = ["curl", "-sN", "-w", "\n%{http_code}", f"{live.url}{path}", "-H", "content-type: application/json"]
    result = subprocess.run([*command, "-d", json.dumps(body)], capture_output=True, text=True, timeout=30, check=True)
    output, _, status = result.stdout.rpartition("\n")
    return int(status), output


def sse_payloads(output: str) -> list[Any]:
    events = output.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(event.startswith("data: ") for event in events[:-2])
    return [json.loads(event.removeprefix("data: ")) for event in events[:-2]]


def test_curl_chat_stream(live: Live) -> None:
    body = {"model": MODEL, "stream": True, "max_tokens": 7, "messages": [{"role": "user", "content": "Count"}]}
    status, output = curl(live, "/v1/chat/completions", body)
    assert status == 200
    chunks = sse_payloads(output)
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks) == " 1. 2. "
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_curl_completions_stream_and_whole_answer(live: Live) -> None:
    body = {"model": MODEL, "prompt": "Count:", "max_tokens": 5}
    status, output = curl(live, "/v1/completions", {**body, "stream": True})
    assert status == 200
    assert "".join(chunk["choices"][0]["text"] for chunk in sse_payloads(output)) == " 1. 2"
    status, output = curl(live, "/v1/completions", body)
    assert status == 200
    answer = json.loads(output)
    assert answer["object"] == "text_completion" and answer["choices"][0]["text"] == " 1. 2"


def test_curl_error_envelope(live: Live) -> None:
    body = {"model": "nope", "messages": [{"role": "user", "content": "x"}]}
    status, output = curl(live, "/v1/chat/completions", body)
    assert status == 404
    error = json.loads(output)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "model_not_found"
