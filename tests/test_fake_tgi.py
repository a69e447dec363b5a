"""Fidelity guards for the fake TGI upstream (fakes/tgi/) and the loopback server helper."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from fakes.loopback import LoopbackServer
from fakes.tgi import (
    RECORDED_PROMPT,
    RECORDED_STREAM_FIXTURE,
    FakeTGI,
    load_fixture,
    parse_generate_request,
    split_sse_events,
    sse_json,
)

pytestmark = pytest.mark.sockets

LEGACY_FIXTURE = "hfjs_tape_generate_stream_flan_t5_legacy_nospace.sse"


@pytest.fixture
def fake() -> FakeTGI:
    return FakeTGI()


@pytest.fixture
async def client(fake: FakeTGI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=fake.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tgi") as http:
        yield http


def body(inputs: str = "Hello there", stream: bool = True, **parameters: Any) -> dict[str, Any]:
    return {"inputs": inputs, "parameters": parameters, "stream": stream}


async def test_default_model_reproduces_recorded_tape_byte_exact(client: httpx.AsyncClient) -> None:
    # The hf.js recording: max_new_tokens=50, seed=0, return_full_text (POST / default for that model).
    params: dict[str, Any] = {"max_new_tokens": 50, "seed": 0, "return_full_text": True}
    response = await client.post("/generate_stream", json=body(RECORDED_PROMPT, **params))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.content == load_fixture(RECORDED_STREAM_FIXTURE)


async def test_legacy_framing_matches_recorded_legacy_shape(fake: FakeTGI, client: httpx.AsyncClient) -> None:
    fake.framing = "legacy"
    content = (await client.post("/generate_stream", json=body(max_new_tokens=3))).content
    recorded = load_fixture(LEGACY_FIXTURE)
    assert all(event.startswith(b"data:{") for event in split_sse_events(content))
    assert [list(e) for e in sse_json(content)] == [list(e) for e in sse_json(recorded)][:3]


async def test_crlf_and_keepalive_comments(fake: FakeTGI, client: httpx.AsyncClient) -> None:
    fake.line_ending, fake.keepalive_every = "\r\n", 2
    content = (await client.post("/generate_stream", json=body(max_new_tokens=4))).content
    assert content.count(b":\r\n\r\n") == 2 and b"\n\n" not in content.replace(b"\r\n\r\n", b"")
    assert [event["index"] for event in sse_json(content)] == [1, 2, 3, 4]


async def test_details_only_when_requested_and_eos_is_last_special_token(client: httpx.AsyncClient) -> None:
    plain = sse_json((await client.post("/generate_stream", json=body())).content)
    assert plain[-1]["details"] is None
    events = sse_json((await client.post("/generate_stream", json=body(details=True))).content)
    assert all(event["details"] is None and event["generated_text"] is None for event in events[:-1])
    last = events[-1]
    assert last["token"] == {"id": 2, "text": "</s>", "logprob": last["token"]["logprob"], "special": True}
    assert last["details"] == {"finish_reason": "eos_token", "generated_tokens": 51, "seed": None, "input_length": 2}
    assert last["generated_text"] == "".join(event["token"]["text"] for event in events[:-1])
    assert "</s>" not in last["generated_text"] and "top_tokens" not in last


async def test_stop_sequence_is_kept_in_text_like_recorded_snapshot(fake: FakeTGI, client: httpx.AsyncClient) -> None:
    snapshot = orjson.loads(load_fixture("tgi_snapshot_generate_details_llama_stop_sequence.json"))
    fake.script = [token["text"] for token in snapshot["details"]["tokens"]] + [" again"]
    params: dict[str, Any] = {"stop": ["test"], "return_full_text": True, "seed": 0, "do_sample": True, "details": True}
    result = (await client.post("/generate", json=body("Test request", stream=False, **params))).json()
    assert result["generated_text"] == snapshot["generated_text"] == "Test request failed: Error in test"
    expected = {key: snapshot["details"][key] for key in ("finish_reason", "generated_tokens", "seed")}
    assert {key: result["details"][key] for key in expected} == expected


async def test_length_limit_is_checked_before_eos(fake: FakeTGI, client: httpx.AsyncClient) -> None:
    fake.script = ["a"]
    response = await client.post("/generate", json=body("one two three", stream=False, max_new_tokens=2, details=True))
    details = response.json()["details"]
    assert details["finish_reason"] == "length"  # EOS as the last allowed token reports length
    assert [token["special"] for token in details["tokens"]] == [False, True]
    assert response.json()["generated_text"] == "a"
    assert response.headers["x-prompt-tokens"] == "3" and response.headers["x-generated-tokens"] == "2"
    tokenized = (await client.post("/tokenize", json={"inputs": "one two three"})).json()
    assert [(t["text"], t["start"], t["stop"]) for t in tokenized] == [("one", 0, 3), ("two", 4, 7), ("three", 8, 13)]


async def test_top_n_tokens_and_prefill(client: httpx.AsyncClient) -> None:
    params: dict[str, Any] = {
        "top_n_tokens": 3,
        "decoder_input_details": True,
        "max_new_tokens": 4,
        "do_sample": True,
        "seed": 7,
    }
    details = (await client.post("/generate", json=body(stream=False, **params))).json()["details"]
    assert details["seed"] == 7 and [p["logprob"] is None for p in details["prefill"]] == [True, False]
    for chosen, top in zip(details["tokens"], details["top_tokens"], strict=True):
        assert len(top) == 3 and top[0] == chosen
        assert all(other["logprob"] <= chosen["logprob"] for other in top)
    snapshot = orjson.loads(load_fixture("tgi_snapshot_generate_details_t5_eos_token.json"))["details"]
    assert set(details) - {"top_tokens"} <= set(snapshot) and set(details["tokens"][0]) == set(snapshot["tokens"][0])


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"top_p": 1.0}, "`top_p` must be > 0.0 and < 1.0"),
        ({"temperature": 0}, "`temperature` must be strictly positive"),
        ({"max_new_tokens": 0}, "`max_new_tokens` must be strictly positive"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "`stop` supports up to 4 stop sequences. Given: 5"),
        (
            {"max_new_tokens": 10000},
            "`inputs` tokens + `max_new_tokens` must be <= 4096. Given: 2 `inputs` tokens and 10000 `max_new_tokens`",
        ),
    ],
)
async def test_validation_error_is_422_json_or_200_sse_event(
    client: httpx.AsyncClient, parameters: dict[str, Any], message: str
) -> None:
    error = {"error": f"Input validation error: {message}", "error_type": "validation"}
    response = await client.post("/generate", json=body(stream=False, **parameters))
    assert (response.status_code, response.json()) == (422, error)
    response = await client.post("/generate_stream", json=body(**parameters))
    assert response.status_code == 200
    assert response.content == b"data: " + orjson.dumps(error) + b"\n\n"


async def test_recorded_validation_error_event_shape() -> None:
    tapes = orjson.loads(load_fixture("hfjs_tapes_subset_tgi_hf_inference.json"))
    recorded = tapes["e9fc55386e8e5146072ba6967963ec8973ae0b0b566c769ec4056957d5a2416d"]["response"]["body"]
    fake = FakeTGI(framing="legacy")  # that recording predates TGI 2.1
    transport = httpx.ASGITransport(app=fake.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tgi") as http:
        prompt = " ".join(["word"] * 17)
        response = await http.post("/generate_stream", json=body(prompt, max_new_tokens=10000))
    assert response.text == recorded


async def test_default_parameters_quirk_and_overload(fake: FakeTGI, client: httpx.AsyncClient) -> None:
    assert parse_generate_request("application/json", b'{"inputs":"x"}').parameters["do_sample"] is True
    assert (
        parse_generate_request("application/json", b'{"inputs":"x","parameters":{}}').parameters["do_sample"] is False
    )
    fake.max_concurrent_requests = 0
    overloaded = {"error": "Model is overloaded", "error_type": "overloaded"}
    assert sse_json((await client.post("/generate_stream", json=body())).content) == [overloaded]
    response = await client.post("/generate", json=body(stream=False))
    assert (response.status_code, response.json()) == (429, overloaded)


async def test_fault_injection(fake: FakeTGI, client: httpx.AsyncClient) -> None:
    fake.error_event_after = 2
    events = sse_json((await client.post("/generate_stream", json=body())).content)
    assert len(events) == 3 and events[-1] == {
        "error": "Request failed during generation: boom",
        "error_type": "generation",
    }
    fake.error_event_after, fake.eof_after = None, 3
    events = sse_json((await client.post("/generate_stream", json=body())).content)
    assert len(events) == 3 and events[-1]["generated_text"] is None
    fake.fail_status, fake.fail_headers = 429, {"retry-after": "1"}
    response = await client.post("/generate_stream", json=body())
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    assert response.json() == {"error": "Model is overloaded", "error_type": "overloaded"}
    assert [s.outcome for s in fake.streams] == ["error_event", "eof", "failed"]


async def test_replay_fixture_byte_exact_over_loopback(fake: FakeTGI) -> None:
    fake.replay_sse = load_fixture(LEGACY_FIXTURE)
    with LoopbackServer(fake.app) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post("/generate_stream", json=body())
    assert response.content == fake.replay_sse
    assert fake.streams[0].events_sent == 5


async def test_disconnect_recorded_when_real_client_closes_slow_stream(fake: FakeTGI) -> None:
    fake.token_delay = 0.2
    with LoopbackServer(fake.app) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            async with http.stream("POST", "/generate_stream", json=body()) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        break
            closed_at = time.monotonic()
        assert await fake.await_disconnect(timeout=1.0)
        record = fake.streams[0]
        assert record.wait_finished(timeout=1.0)
        assert record.disconnected_at is not None and record.disconnected_at - closed_at < 1.0
        sent = record.events_sent
        await asyncio.sleep(0.5)
        assert record.outcome == "disconnected" and record.events_sent == sent < 5


async def test_non_stream_generate_notices_disconnect(fake: FakeTGI) -> None:
    fake.token_delay = 0.2
    with LoopbackServer(fake.app) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=0.5) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post("/generate", json=body(stream=False))
        assert await fake.await_disconnect(timeout=1.0)
        assert fake.streams[0].wait_finished(timeout=1.0) and fake.streams[0].tokens_generated < 10


async def test_several_loopback_servers_stream_incrementally() -> None:
    fakes = [FakeTGI(model_id="a/one", token_delay=0.05), FakeTGI(model_id="b/two")]
    with LoopbackServer(fakes[0].app) as first, LoopbackServer(fakes[1].app) as second:
        assert first.url != second.url
        async with httpx.AsyncClient() as http:
            infos = [(await http.get(f"{server.url}/info")).json() for server in (first, second)]
            assert [info["model_id"] for info in infos] == ["a/one", "b/two"]
            assert (await http.get(f"{second.url}/health")).status_code == 200
            arrivals: list[float] = []
            async with http.stream("POST", f"{first.url}/generate_stream", json=body(max_new_tokens=4)) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        arrivals.append(time.monotonic())
    assert len(arrivals) == 4 and arrivals[-1] - arrivals[0] >= 0.1
