"""The soak test's load: concurrent OpenAI requests, some left early on purpose, each answer classified.

Every answer is one of
- `complete`: 200 and a well-formed answer; a stream is OpenAI chunks with exactly one finish per choice,
  then `data: [DONE]` and nothing after it;
- `clean_error`: an HTTP error carrying OpenAI's envelope `{"error": {"message","type","param","code"}}`, or
  a 200 stream whose last event before `data: [DONE]` is one such `{"error": ...}` object;
- `client_left`: the client went away on purpose before the end;
- `broken`: anything else (a cut stream, no `[DONE]`, bad JSON, an error without the envelope, no answer
  within the configured deadlines plus a margin).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

COMPLETE, CLEAN_ERROR, CLIENT_LEFT, BROKEN = "complete", "clean_error", "client_left", "broken"
DONE = b"data: [DONE]\n\n"
# Clients refused with 429 wait before asking again, as the OpenAI SDKs do; the proxy's Retry-After is 1 s.
BACKOFF_AFTER_429 = 1.0
LAG_PROBE = 0.05  # seconds between two looks at the event loop's lag
ERROR_KEYS = {"message", "type", "param", "code"}
ENDPOINTS = {"/v1/chat/completions": "chat.completion", "/v1/completions": "text_completion"}
CHUNK_OBJECTS = {"/v1/chat/completions": "chat.completion.chunk", "/v1/completions": "text_completion"}


@dataclass(frozen=True)
class Call:
    endpoint: str
    stream: bool
    n: int
    body: dict[str, Any]
    leave_after: float | None  # seconds (non-stream) or events (stream) before leaving on purpose

    def describe(self) -> str:
        mode = "stream" if self.stream else "json"
        usage = " include_usage" if self.body.get("stream_options") else ""
        return f"{self.endpoint} {mode} n={self.n} max_tokens={self.body['max_tokens']}{usage}"


@dataclass(frozen=True)
class Outcome:
    kind: str
    detail: str  # error: "<status> <code>" or "event <code>"; broken: what was wrong
    call: Call
    seconds: float


@dataclass(frozen=True)
class Load:
    model: str
    concurrency: int
    duration: float
    requests: int | None
    leave_share: float  # how many calls leave early on purpose
    answer_bound: float  # seconds: no answer by then is `broken`
    seed: int


def draw_call(rng: random.Random, model: str, leave_share: float) -> Call:
    endpoint = rng.choice(["/v1/chat/completions"] * 3 + ["/v1/completions"])
    stream = rng.random() < 0.65
    n = 2 if rng.random() < 0.1 else 1
    body: dict[str, Any] = {"model": model, "max_tokens": rng.randint(3, 16), "stream": stream, "n": n}
    if endpoint == "/v1/chat/completions":
        body["messages"] = [{"role": "user", "content": f"Tell me about {rng.randint(0, 10**6)}."}]
    else:
        body["prompt"] = f"Once upon a time {rng.randint(0, 10**6)}"
    if stream and rng.random() < 0.2:
        body["stream_options"] = {"include_usage": True}
    leave_after: float | None = None
    if rng.random() < leave_share:
        leave_after = float(rng.randint(1, 6)) if stream else rng.uniform(0.05, 1.5)
    return Call(endpoint, stream, n, body, leave_after)


def error_code(value: Any) -> str | None:
    """The code of an OpenAI error envelope, None when `value` is not exactly one."""
    if not isinstance(value, dict) or set(value) != {"error"}:
        return None
    error = value["error"]
    if not isinstance(error, dict) or set(error) != ERROR_KEYS or not isinstance(error["message"], str):
        return None
    return str(error["code"])


def classify_json(call: Call, status: int, body: bytes) -> tuple[str, str]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return BROKEN, f"{status} body is not JSON: {body[:80]!r}"
    if status != 200:
        code = error_code(value)
        return (CLEAN_ERROR, f"{status} {code}") if code is not None else (BROKEN, f"{status} without envelope")
    choices = value.get("choices") if isinstance(value, dict) else None
    if value.get("object") != ENDPOINTS[call.endpoint] or not isinstance(choices, list):
        return BROKEN, f"200 not a {ENDPOINTS[call.endpoint]}: {body[:80]!r}"
    if sorted(choice.get("index") for choice in choices) != list(range(call.n)):
        return BROKEN, "200 with the wrong choice indices"
    for choice in choices:
        text = (
            choice.get("text") if call.endpoint == "/v1/completions" else (choice.get("message") or {}).get("content")
        )
        if not isinstance(text, str) or not isinstance(choice.get("finish_reason"), str):
            return BROKEN, "200 with a choice lacking text or finish_reason"
    return COMPLETE, "200"


def stream_events(body: bytes) -> list[bytes] | str:
    """The data payloads of an SSE body ending in `[DONE]` (comments skipped), or what is wrong with it."""
    if not body.endswith(DONE):
        return f"does not end with [DONE]: ...{body[-60:]!r}"
    payloads: list[bytes] = []
    for block in body[: -len(DONE)].split(b"\n\n"):
        lines = [line for line in block.split(b"\n") if line and not line.startswith(b":")]
        if not lines:
            continue
        if len(lines) != 1 or not lines[0].startswith(b"data: "):
            return f"not one data line: {block[:80]!r}"
        payloads.append(lines[0].removeprefix(b"data: "))
    if b"[DONE]" in payloads:
        return "[DONE] twice"
    return payloads


def classify_stream(call: Call, body: bytes) -> tuple[str, str]:
    payloads = stream_events(body)
    if isinstance(payloads, str):
        return BROKEN, payloads
    try:
        events = [orjson.loads(payload) for payload in payloads]
    except orjson.JSONDecodeError:
        return BROKEN, f"an event is not JSON: {body[-200:]!r}"
    code = error_code(events[-1]) if events else None
    if code is not None:
        events.pop()
    problem = chunks_problem(call, events, whole=code is None)
    if problem is not None:
        return BROKEN, problem
    return (COMPLETE, "200") if code is None else (CLEAN_ERROR, f"event {code}")


def chunks_problem(call: Call, events: list[Any], *, whole: bool) -> str | None:
    """What is wrong with a stream's chunks, None if nothing; `whole`: they must finish every choice."""
    usage_asked = bool(call.body.get("stream_options"))
    finished: list[int] = []
    ids: set[str] = set()
    usage_seen = False
    for event in events:
        if not isinstance(event, dict) or event.get("object") != CHUNK_OBJECTS[call.endpoint]:
            return f"not a chunk: {str(event)[:120]}"
        if usage_seen:
            return "a chunk after the usage chunk"
        ids.add(str(event.get("id")))
        choices = event.get("choices")
        if not isinstance(choices, list) or (not choices and not (usage_asked and event.get("usage"))):
            return f"a chunk without choices: {str(event)[:120]}"
        usage_seen = not choices
        for choice in choices:
            index = choice.get("index")
            if index not in range(call.n) or index in finished:
                return f"choice {index} out of range or after its finish"
            if choice.get("finish_reason") is not None:
                finished.append(index)
    if len(ids) > 1:
        return f"{len(ids)} different chunk ids"
    if whole and sorted(finished) != list(range(call.n)):
        return f"finish chunks for choices {sorted(finished)}, expected one for each of {call.n}"
    if whole and usage_asked and not usage_seen:
        return "no usage chunk although asked for"
    return None


async def perform(client: httpx.AsyncClient, call: Call, bound: float) -> tuple[str, str]:
    """Send `call` and classify its answer; `bound` seconds without an answer is `broken`."""
    try:
        async with asyncio.timeout(bound):
            if call.stream:
                return await _stream(client, call)
            if call.leave_after is None:
                response = await client.post(call.endpoint, json=call.body)
                return classify_json(call, response.status_code, response.content)
            try:
                async with asyncio.timeout(call.leave_after):
                    response = await client.post(call.endpoint, json=call.body)
            except TimeoutError:
                return CLIENT_LEFT, "left"
            return classify_json(call, response.status_code, response.content)
    except TimeoutError:
        return BROKEN, f"no answer within {bound:g} s"
    except httpx.HTTPError as exc:
        return BROKEN, f"transport: {type(exc).__name__}: {exc}"


async def _stream(client: httpx.AsyncClient, call: Call) -> tuple[str, str]:
    async with client.stream("POST", call.endpoint, json=call.body) as response:
        if response.status_code != 200:
            return classify_json(call, response.status_code, await response.aread())
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            return BROKEN, f"200 stream with content-type {response.headers.get('content-type')}"
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if call.leave_after is not None and body.count(b"data: ") >= call.leave_after:
                if not body.endswith(DONE):
                    return CLIENT_LEFT, "left"  # closing the response drops the connection mid-stream
        return classify_stream(call, body)


async def run_load(base_url: str, load: Load) -> tuple[list[Outcome], float, float]:
    """`load.concurrency` clients asking one after another until the duration or request budget runs out.
    Also returns how late this process' event loop ran at worst (a client too busy to read its answers in
    time would blame the proxy for its own delay) and the slowest `/health` of the proxy (its own loop's lag)."""
    outcomes: list[Outcome] = []
    lag = health = 0.0
    deadline = time.monotonic() + load.duration
    issued = 0

    def more() -> bool:
        nonlocal issued
        if time.monotonic() >= deadline or (load.requests is not None and issued >= load.requests):
            return False
        issued += 1
        return True

    async def client_loop(rng: random.Random) -> None:
        while more():
            call = draw_call(rng, load.model, load.leave_share)
            started = time.monotonic()
            kind, detail = await perform(http, call, load.answer_bound)
            outcomes.append(Outcome(kind, detail, call, time.monotonic() - started))
            if detail.startswith("429 "):
                await asyncio.sleep(BACKOFF_AFTER_429)

    async def watch_lag() -> None:
        nonlocal lag, health
        async with httpx.AsyncClient(base_url=base_url) as probe:
            while True:
                asked = time.monotonic()
                await asyncio.sleep(LAG_PROBE)
                lag = max(lag, time.monotonic() - asked - LAG_PROBE)
                asked = time.monotonic()
                await probe.get("/health")
                health = max(health, time.monotonic() - asked)

    # Idle connections are dropped after 2 s, before uvicorn's 5 s keep-alive timeout: at 5 s on both sides (httpx's
    # default) a request may go out on a connection the server is closing, a race of the client's making.
    limits = httpx.Limits(
        max_connections=load.concurrency, max_keepalive_connections=load.concurrency, keepalive_expiry=2.0
    )
    async with httpx.AsyncClient(base_url=base_url, timeout=None, limits=limits) as http:
        watcher = asyncio.create_task(watch_lag())
        async with asyncio.TaskGroup() as group:
            for index in range(load.concurrency):
                group.create_task(client_loop(random.Random(load.seed * 7919 + index)))
        watcher.cancel()
    return outcomes, lag, health
