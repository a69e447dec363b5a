"""Real sockets: tokens reach the client as they are generated, and a client that leaves cancels the
upstream request at once (the fake TGI records when its connection closes). In-process transports buffer
whole bodies, so none of this can be checked without uvicorn on loopback."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.support import MODEL, Live

pytestmark = pytest.mark.sockets

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Count."}]


def test_stream_is_incremental(live: Live) -> None:
    live.fake.token_delay = 0.2
    body = {"model": MODEL, "messages": MESSAGES, "stream": True, "max_tokens": 6}
    arrivals: list[float] = []
    start = time.monotonic()
    with httpx.stream("POST", f"{live.url}/v1/chat/completions", json=body, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["x-request-id"]
        assert "content-encoding" not in response.headers
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"role"' not in line:
                arrivals.append(time.monotonic() - start)
    assert len(arrivals) >= 5
    # six tokens 0.2 s apart: the first content arrives long before the last one is generated
    assert arrivals[0] < arrivals[-1] - 0.6


def test_wire_format_is_byte_exact(live: Live) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "stream": True, "max_tokens": 2}
    raw = httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=10).content
    events = raw.split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    for event in events[:-1]:
        assert event.startswith(b"data: ") and b"\n" not in event and b"\r" not in event
        assert b"event:" not in event and b"id:" not in event.split(b"{")[0]


def test_client_leaving_a_stream_cancels_upstream(live: Live) -> None:
    live.fake.token_delay = 0.2
    client = live.sdk()
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    left_at = time.monotonic()
    stream.close()
    assert live.fake.wait_for_disconnect(timeout=5)
    record = live.fake.streams[-1]
    assert record.disconnected_at is not None and record.disconnected_at - left_at < 1.0
    assert record.events_sent < 20  # it stopped generating, far short of the 51 tokens


def test_client_leaving_before_first_token_cancels_upstream(live: Live) -> None:
    live.fake.headers_delay = 0.0
    live.fake.token_delay = 1.0
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    with httpx.stream("POST", f"{live.url}/v1/chat/completions", json=body, timeout=10) as response:
        # the proxy sent headers (after the 0.5 s first-token wait) but no token yet
        assert response.status_code == 200
        left_at = time.monotonic()
    assert live.fake.wait_for_disconnect(timeout=5)
    assert live.fake.streams[-1].disconnected_at is not None
    assert live.fake.streams[-1].disconnected_at - left_at < 1.0


def test_client_leaving_a_non_stream_request_cancels_upstream(live: Live) -> None:
    live.fake.token_delay = 0.2
    body = {"model": MODEL, "messages": MESSAGES}
    left: list[float] = []

    def call() -> None:
        try:
            httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=0.6)
        except httpx.TimeoutException:
            left.append(time.monotonic())

    worker = threading.Thread(target=call)
    worker.start()
    worker.join()
    assert left, "the request should have been abandoned by its client"
    assert live.fake.wait_for_disconnect(timeout=5)
    record = live.fake.streams[-1] if live.fake.streams else None
    disconnected_at = record.disconnected_at if record else None
    assert disconnected_at is not None and disconnected_at - left[0] < 1.0


def test_slow_first_token_gets_keepalive_then_completes(live: Live) -> None:
    live.fake.headers_delay = 1.2  # longer than the proxy's 0.5 s ping interval
    body = {"model": MODEL, "messages": MESSAGES, "stream": True, "max_tokens": 2}
    raw = httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=10).text
    assert raw.startswith(": ping")
    assert raw.endswith("data: [DONE]\n\n")
    # the SDK skips the comment lines and reads the stream as usual
    stream = live.sdk().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, max_tokens=2)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == " 1"


def test_client_leaving_cancels_every_choice_of_n(live: Live) -> None:
    live.fake.token_delay = 0.2
    stream = live.sdk().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, n=3)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    left_at = time.monotonic()
    stream.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(r.disconnected_at for r in live.fake.streams):
        time.sleep(0.05)
    records = [r for r in live.fake.streams if r.path == "/generate_stream"]
    assert len(records) == 3
    assert all(r.disconnected_at is not None and r.disconnected_at - left_at < 1.0 for r in records)
