"""Fault injection on real loopback sockets: every broken upstream ends as a complete answer or a well-formed
OpenAI error within the configured time, retries happen only before the first token, replicas fail over
and rest, backpressure answers 429, and no upstream connection outlives the client.

The bound on "within the configured time" is the test client's own timeout (10 s), far above the deadlines
configured here (well under a second): a proxy that waited for the upstream instead would fail the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from fakes.loopback import LoopbackServer
from fakes.tgi import FakeTGI
from server.app import create_app
from server.config import Settings
from tests.support import MODEL

pytestmark = pytest.mark.sockets

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]
# Small delays so that retries are quick; deadlines are set per test.
FAST_RETRIES = {"backoff": 0.02, "backoff_max": 0.05}


@contextlib.contextmanager
def proxy(*urls: str, **upstream: Any) -> Iterator[str]:
    settings = Settings.model_validate(
        {
            "models": [
                {
                    "name": MODEL,
                    "upstream": {"kind": "tgi", "urls": list(urls), **FAST_RETRIES, **upstream},
                    "chat_template": "chatml",
                }
            ],
            "server": {"ping_seconds": 5},
        }
    )
    with LoopbackServer(create_app(settings)) as server:
        yield server.url


@contextlib.contextmanager
def served(*fakes: FakeTGI) -> Iterator[list[str]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(LoopbackServer(fake.app)).url for fake in fakes]


def closed_port() -> str:
    """An address where nothing listens: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def ask(url: str, *, stream: bool, **body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        return await http.post(CHAT, json={"model": MODEL, "messages": MESSAGES, "stream": stream, **body})


def events(response: httpx.Response) -> list[Any]:
    data = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert data[-1] == "[DONE]", response.text
    return [orjson.loads(item) for item in data[:-1]]


def text_of(chunks: list[Any]) -> str:
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)


def content(response: httpx.Response) -> str:
    if response.headers["content-type"].startswith("text/event-stream"):
        return text_of(events(response))
    return str(response.json()["choices"][0]["message"]["content"])


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, error


async def settled(fake: FakeTGI) -> None:
    """Every generation the fake started has ended (its connection closed or finished)."""
    for _ in range(200):
        if fake.in_flight == 0 and all(record.outcome is not None for record in fake.streams):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"upstream work left open: {fake!r}")


@pytest.mark.parametrize("stream", [False, True])
async def test_refused_connections_are_retried_then_502(stream: bool) -> None:
    with proxy(closed_port(), closed_port(), retries=3) as url:
        assert_error(await ask(url, stream=stream), 502, "upstream_unreachable")


@pytest.mark.parametrize("stream", [False, True])
async def test_hang_before_headers_is_504_and_the_connection_closes(stream: bool) -> None:
    fake = FakeTGI(headers_delay=30)
    with served(fake) as urls, proxy(*urls, first_token_timeout=0.3, retries=0) as url:
        assert_error(await ask(url, stream=stream), 504, "upstream_timeout")
        assert await fake.await_disconnect(5)
        await settled(fake)


async def test_hang_mid_stream_ends_with_an_error_event_and_closes_the_upstream() -> None:
    fake = FakeTGI(stall_after=2)
    with served(fake) as urls, proxy(*urls, idle_timeout=0.3) as url:
        response = await ask(url, stream=True)
        chunks = events(response)
        assert chunks[-1]["error"]["code"] == "upstream_timeout"
        assert "a token for 0.3 s" in chunks[-1]["error"]["message"]
        assert text_of(chunks[:-1]) == "".join(fake.script[:2])
        await settled(fake)
    assert len(fake.streams) == 1  # never retried once tokens were sent


async def test_a_trickling_stream_completes_within_its_idle_timeout_but_not_past_its_total() -> None:
    fake = FakeTGI(script=["a", "b", "c"], token_delay=0.15)
    with served(fake) as urls:
        with proxy(*urls, idle_timeout=1) as url:
            assert content(await ask(url, stream=True)) == "abc"
        with proxy(*urls, idle_timeout=1, total_timeout=0.35) as url:
            chunks = events(await ask(url, stream=True))
            assert chunks[-1]["error"]["code"] == "upstream_timeout"
            assert "the whole answer within 0.35 s" in chunks[-1]["error"]["message"]
        await settled(fake)


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\xff garbage, not an event stream",
        b'data: {"index":1,"token":{"id":1,"te',  # closed in the middle of the first event
    ],
)
async def test_garbage_or_a_cut_before_the_first_event_is_retried_then_reported(body: bytes) -> None:
    fake = FakeTGI(replay_sse=body)
    with served(fake) as urls, proxy(*urls, retries=2) as url:
        assert_error(await ask(url, stream=True), 502, "upstream_connection")
    assert len(fake.streams) == 3


async def test_a_cut_mid_event_after_tokens_is_an_error_event_without_retry() -> None:
    fake = FakeTGI(eof_after=3)
    with served(fake) as urls, proxy(*urls, retries=2) as url:
        chunks = events(await ask(url, stream=True))
        assert chunks[-1]["error"]["code"] == "incomplete_generation_stream"
    assert len(fake.streams) == 1


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        (500, b"internal failure", {"content-type": "text/plain"}),
        (503, {"error": "Model fake/model is currently loading", "estimated_time": 0.05}, {}),
        (429, {"error": "Model is overloaded", "error_type": "overloaded"}, {"retry-after": "0"}),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_failure_before_the_first_token_is_retried_and_the_answer_completes(
    status: int, body: Any, headers: dict[str, str], stream: bool
) -> None:
    fake = FakeTGI(fail_status=status, fail_body=body, fail_headers=headers, fail_times=1)
    with served(fake) as urls, proxy(*urls, retries=2) as url:
        response = await ask(url, stream=stream, max_tokens=3)
        assert response.status_code == 200 and content(response) == "".join(fake.script[:3])
    assert [record.outcome for record in fake.streams] == ["failed", "complete"]


@pytest.mark.parametrize(
    ("status", "body", "expected", "code"),
    [
        (500, b"internal failure", 500, "upstream_generation_error"),
        (503, {"error": "Model fake/model is currently loading", "estimated_time": 0.01}, 503, "model_loading"),
        (429, {"error": "Model is overloaded", "error_type": "overloaded"}, 429, "rate_limit_exceeded"),
    ],
)
async def test_retries_are_bounded_and_the_last_error_is_reported(
    status: int, body: Any, expected: int, code: str
) -> None:
    fake = FakeTGI(fail_status=status, fail_body=body)
    with served(fake) as urls, proxy(*urls, retries=2) as url:
        response = await ask(url, stream=True)
        assert_error(response, expected, code)
        if expected in (429, 503):
            assert float(response.headers["retry-after"]) >= 0
    assert len(fake.streams) == 3


async def test_retry_waits_at_least_what_the_upstream_asked_for() -> None:
    fake = FakeTGI(fail_status=429, fail_headers={"retry-after": "0.4"}, fail_times=1)
    with served(fake) as urls, proxy(*urls, retries=1) as url:
        assert (await ask(url, stream=False, max_tokens=2)).status_code == 200
    first, second = fake.streams
    assert second.started_at - first.started_at >= 0.4


async def test_a_retry_that_would_pass_the_deadline_is_not_made() -> None:
    loading = {"error": "Model fake/model is currently loading", "estimated_time": 60}
    fake = FakeTGI(fail_status=503, fail_body=loading)
    with served(fake) as urls, proxy(*urls, retries=5, first_token_timeout=2) as url:
        response = await ask(url, stream=False)
        assert_error(response, 503, "model_loading")
        assert response.headers["retry-after"] == "60"
    assert len(fake.streams) == 1


async def test_a_failing_replica_is_skipped_and_rested() -> None:
    broken, healthy = FakeTGI(fail_status=503), FakeTGI()
    with served(broken, healthy) as urls, proxy(*urls, cooldown=60) as url:
        for _ in range(4):
            response = await ask(url, stream=True, max_tokens=2)
            assert response.status_code == 200 and content(response) == "".join(healthy.script[:2])
    assert len(broken.streams) <= 1  # tried at most once, then resting for the cool-down
    assert len(healthy.streams) == 4


async def test_a_rested_replica_is_tried_again_after_its_cool_down() -> None:
    flaky, steady = FakeTGI(fail_status=500, fail_times=1), FakeTGI(token_delay=0.01)
    with served(flaky, steady) as urls, proxy(*urls, cooldown=0.2) as url:
        while not flaky.streams:  # until the balancer has sent one call to the flaky replica
            assert (await ask(url, stream=False, max_tokens=1)).status_code == 200
        await asyncio.sleep(0.3)
        for _ in range(4):
            assert (await ask(url, stream=False, max_tokens=1)).status_code == 200
    assert [record.outcome for record in flaky.streams][:1] == ["failed"]
    assert "complete" in [record.outcome for record in flaky.streams]


async def test_least_in_flight_spreads_concurrent_streams_over_replicas() -> None:
    first, second = FakeTGI(token_delay=0.05), FakeTGI(token_delay=0.05)
    with served(first, second) as urls, proxy(*urls) as url:
        responses = await asyncio.gather(*(ask(url, stream=True, max_tokens=4) for _ in range(6)))
        assert all(response.status_code == 200 for response in responses)
    assert len(first.streams) == len(second.streams) == 3


async def test_backpressure_queues_then_refuses_with_429() -> None:
    fake = FakeTGI(token_delay=0.1)
    with served(fake) as urls, proxy(*urls, max_concurrency=1, max_queue=1, queue_timeout=5) as url:
        running = asyncio.ensure_future(ask(url, stream=False, max_tokens=5))
        while fake.in_flight == 0:
            await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(ask(url, stream=True, max_tokens=2))
        await asyncio.sleep(0.1)  # let it take the one queue place
        refused = await ask(url, stream=True, max_tokens=2)
        assert_error(refused, 429, "model_at_capacity")
        assert refused.headers["retry-after"] == "1"
        assert (await running).status_code == 200 and (await queued).status_code == 200


async def test_a_queued_call_gives_up_after_the_queue_timeout() -> None:
    fake = FakeTGI(token_delay=0.2)
    with served(fake) as urls, proxy(*urls, max_concurrency=1, max_queue=4, queue_timeout=0.1) as url:
        running = asyncio.ensure_future(ask(url, stream=True, max_tokens=5))
        while fake.in_flight == 0:
            await asyncio.sleep(0.01)
        assert_error(await ask(url, stream=False, max_tokens=1), 429, "model_at_capacity")
        assert (await running).status_code == 200


async def test_a_client_leaving_mid_stream_closes_the_upstream_and_frees_its_slot() -> None:
    fake = FakeTGI(token_delay=0.05)
    with served(fake) as urls, proxy(*urls, max_concurrency=1, max_queue=0) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            request = {"model": MODEL, "messages": MESSAGES, "stream": True, "max_tokens": 100}
            async with http.stream("POST", CHAT, json=request) as response:
                async for line in response.aiter_lines():
                    if '"content":"' in line and '"content":""' not in line:
                        break
        assert await fake.await_disconnect(5)
        await settled(fake)
        fake.token_delay = 0
        assert (await ask(url, stream=False, max_tokens=1)).status_code == 200  # the slot was given back
