"""TGIClient against hand-made transports: error shapes, framings and broken bodies, by mapping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from server.config import UpstreamConfig
from server.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ProxyError,
    UpstreamError,
    UpstreamFailed,
    UpstreamLoading,
    UpstreamOverloaded,
)
from server.upstream.admission import Gate
from server.upstream.base import Upstream
from server.upstream.connect import connect
from server.upstream.errors import error_from_upstream
from server.upstream.http import close_response
from server.upstream.kinds import Translated
from server.upstream.tgi_wire import GenerateParameters, StreamResponse

PARAMS: GenerateParameters = {"do_sample": False, "details": True, "max_new_tokens": 4}
TOKEN = b'{"index":1,"token":{"id":1,"text":"a","logprob":-0.1,"special":false},"generated_text":null,"details":null}'
FINAL = (
    b'{"index":2,"token":{"id":2,"text":"</s>","logprob":-0.1,"special":true},"generated_text":"a",'
    b'"details":{"finish_reason":"eos_token","generated_tokens":2,"seed":null,"input_length":3}}'
)


def client_for(handler: Callable[[httpx.Request], httpx.Response], token: str | None = None) -> Upstream:
    config = UpstreamConfig.model_validate({"kind": "tgi", "url": "http://tgi.test", "token": token, "retries": 0})
    gate = Gate(limit=4, queue=0, timeout=1, name="m")
    backend = connect(config, model="m", gate=gate, transport=httpx.MockTransport(handler))
    assert isinstance(backend, Translated)
    return backend.upstream


def sse(body: bytes) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


async def collect(client: Upstream) -> list[StreamResponse]:
    events: list[StreamResponse] = []
    async for batch in client.stream("hi", PARAMS):
        events.extend(batch)
    await client.aclose()
    return events


async def test_stream_reads_every_framing_up_to_the_final_event() -> None:
    body = b"data:" + TOKEN + b"\r\n\r\n:\r\n\r\ndata: " + FINAL + b"\r\n\r\ndata: " + TOKEN + b"\n\n"
    events = await collect(client_for(sse(body)))
    assert [e["token"]["text"] for e in events] == ["a", "</s>"]  # nothing is read after the final event
    assert events[-1]["details"] == {
        "finish_reason": "eos_token",
        "generated_tokens": 2,
        "seed": None,
        "input_length": 3,
    }


@pytest.mark.parametrize(
    ("body", "kind", "message"),
    [
        (
            b'data: {"error":"Input validation error: `top_p` must be > 0.0","error_type":"validation"}\n\n',
            InvalidRequest,
            "top_p",
        ),
        (b'data: {"error":"Model is overloaded","error_type":"overloaded"}\n\n', UpstreamOverloaded, "overloaded"),
        (
            b'data: {"error":{"message":"Input validation error: boom","http_status_code":422}}\n\n',
            InvalidRequest,
            "boom",
        ),
        (b"data: " + TOKEN + b"\n\n", UpstreamError, "ended before its final event"),
        (b"data: {not json\n\n", UpstreamError, "not JSON"),
        (b"data: [1, 2]\n\n", UpstreamError, "not a JSON object"),
        (b'data: {"no": "token"}\n\n', UpstreamError, "without a token"),
        (b"\x00\xff garbage without framing", UpstreamError, "closed the stream before its first event"),
    ],
)
async def test_broken_or_failing_streams_raise_proxy_errors(body: bytes, kind: type[ProxyError], message: str) -> None:
    with pytest.raises(kind, match=message):
        await collect(client_for(sse(body)))


async def test_tokens_before_an_error_event_are_delivered_first() -> None:
    body = (
        b"data: " + TOKEN + b'\n\ndata: {"error":"Request failed during generation: x","error_type":"generation"}\n\n'
    )
    seen: list[str] = []
    client = client_for(sse(body))
    with pytest.raises(UpstreamFailed):
        async for batch in client.stream("hi", PARAMS):
            seen.extend(e["token"]["text"] for e in batch)
    assert seen == ["a"]
    await client.aclose()


async def test_generate_accepts_list_answers_and_reads_prompt_tokens() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer hf_secret"
        return httpx.Response(200, json=[{"generated_text": "hey"}], headers={"x-prompt-tokens": "5"})

    client = client_for(handler, token="hf_secret")
    generated = await client.generate("hi", PARAMS)
    assert generated.response["generated_text"] == "hey" and generated.prompt_tokens == 5
    await client.aclose()


async def test_limits_fall_back_to_defaults_and_read_info() -> None:
    # (`max_input_tokens`, with its old name `max_input_length`, is no longer kept: nothing read it.)
    down = client_for(lambda _: httpx.Response(503))
    assert (await down.limits()).max_top_n_tokens == 5
    old = client_for(lambda _: httpx.Response(200, json={"max_input_length": 1000, "max_total_tokens": 2048}))
    limits = await old.limits()
    assert limits.max_total_tokens == 2048
    await down.aclose()
    await old.aclose()


def test_http_error_mapping() -> None:
    context = error_from_upstream(
        422,
        {
            "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 10. Given: 9 `inputs` "
            "tokens and 5 `max_new_tokens`",
            "error_type": "validation",
        },
    )
    assert isinstance(context, ContextLengthExceeded)
    loading = error_from_upstream(503, {"error": "Model x is currently loading", "estimated_time": 20.0}, "7")
    assert isinstance(loading, UpstreamLoading) and loading.headers["retry-after"] == "7"
    assert error_from_upstream(502, "<html>bad gateway</html>").status == 502
    assert error_from_upstream(401, "").code == "upstream_auth"
    assert "hf_" not in error_from_upstream(401, "").message


async def test_a_stale_pooled_connection_is_retried_once() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return httpx.Response(200, content=b"data: " + FINAL + b"\n\n")

    events = await collect(client_for(handler))
    assert len(calls) == 2 and events[-1]["generated_text"] == "a"
    refused = client_for(lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused", request=request)))
    with pytest.raises(UpstreamError, match="cannot be reached"):
        await collect(refused)


async def test_concurrent_requests_share_one_info_call() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={"max_total_tokens": 2048})

    client = client_for(handler)
    results = await asyncio.gather(*(client.limits() for _ in range(20)))
    assert calls == ["/info"] and {limits.max_total_tokens for limits in results} == {2048}
    await client.aclose()


async def test_closing_a_response_finishes_even_when_cancelled_meanwhile() -> None:
    closed = asyncio.Event()

    class SlowToClose(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b""

        async def aclose(self) -> None:
            await asyncio.sleep(0.05)  # like a connection being shut down
            closed.set()

    response = httpx.Response(200, stream=SlowToClose())
    closing = asyncio.ensure_future(close_response(response))
    await asyncio.sleep(0.01)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert closed.is_set()
