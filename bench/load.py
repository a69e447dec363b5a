"""The load generator, a process of its own: `python -m bench.load --port P --api chat --concurrency 64 ...`.

Each of `--concurrency` keep-alive connections sends requests one after another until `--seconds` have passed
(the request under way is finished) or `--requests` were sent on it. With `--stagger S`, each connection starts
at a random moment of the first S seconds, as independent clients do; without it they all start at once, and
stay in step when answers take equally long. Responses are parsed with httptools in an
asyncio protocol (cheap, so the generator is not what is measured), and counted:
- tokens: events that carry text (native TGI: every token event; OpenAI chunks: a non-empty `content`);
- time to first token: from writing the request to receiving the first event with a token;
- errors: a status other than 200, a stream without its end (`data: [DONE]` for OpenAI streams, the event with
  `generated_text` for TGI), a connection that fails, an answer not complete after `--timeout` seconds.
One JSON object goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import resource
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import httptools
import orjson

from bench.litellm import KEY
from bench.protocol import HTTPProtocol
from bench.runner import run

__all__ = ["Outcome", "main"]

# A chunk whose delta (or completions text) has characters: `"content":"x` or `"text":"x`, not `""`.
_OPENAI_TOKEN = re.compile(rb'"(?:content|text)":\s?"(?!")')
_NATIVE_END = b'"generated_text":"'
_OPENAI_END = b"data: [DONE]"


@dataclass
class Outcome:
    requests: int = 0
    errors: int = 0
    tokens: int = 0
    seconds: float = 0.0
    ttfts: list[float] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)

    def failed(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def summary(self) -> dict[str, object]:
        ttfts = sorted(self.ttfts)
        result = asdict(self)
        del result["ttfts"]
        result["tokens_per_second"] = self.tokens / self.seconds if self.seconds else 0.0
        result["requests_per_second"] = self.requests / self.seconds if self.seconds else 0.0
        result["ttft_p50_ms"] = _percentile(ttfts, 0.50)
        result["ttft_p99_ms"] = _percentile(ttfts, 0.99)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        result["cpu_seconds"] = usage.ru_utime + usage.ru_stime  # the generator's own, to show it kept up
        return result


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    if len(ordered) == 1:
        return ordered[0] * 1000
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1] * 1000


@dataclass(frozen=True)
class Workload:
    port: int
    path: str
    body: bytes
    stream: bool
    openai: bool
    concurrency: int
    seconds: float
    requests: int  # per connection; 0: as many as fit in `seconds`
    stagger: float = 0.0  # seconds over which the connections' first requests are spread
    timeout: float = 120.0  # a request still unanswered after this is an error, and its connection is closed

    def request_bytes(self) -> bytes:
        return (
            b"POST %s HTTP/1.1\r\nhost: 127.0.0.1:%d\r\ncontent-type: application/json\r\n"
            b"authorization: Bearer %s\r\ncontent-length: %d\r\n\r\n%s"
            % (self.path.encode(), self.port, KEY.encode(), len(self.body), self.body)
        )


class _Client(HTTPProtocol[httptools.HttpResponseParser]):
    """One keep-alive connection; `exchange` sends a request and reads its response."""

    def __init__(self, workload: Workload, outcome: Outcome) -> None:
        super().__init__(httptools.HttpResponseParser(self))
        self._workload = workload
        self._outcome = outcome
        self._done: asyncio.Future[None] | None = None
        self._pending = b""
        self._started = 0.0
        self._first = True
        self._ended = False
        self._body: list[bytes] = []

    def malformed(self) -> None:
        self._finish("malformed response")

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(f"connection lost ({type(exc).__name__ if exc else 'closed'})")

    def on_body(self, body: bytes) -> None:
        if not self._workload.stream:
            self._body.append(body)
            return
        data = self._pending + body
        cut = data.rfind(b"\n\n") + 2  # whole events only: an event may straddle two reads
        events, self._pending = data[:cut], data[cut:]
        if not events:
            return
        workload = self._workload
        if workload.openai:
            tokens = len(_OPENAI_TOKEN.findall(events))
            self._ended = self._ended or _OPENAI_END in events
        else:
            tokens = events.count(b'"token":')
            self._ended = self._ended or _NATIVE_END in events
        if tokens:
            if self._first:
                self._first = False
                self._outcome.ttfts.append(time.perf_counter() - self._started)
            self._outcome.tokens += tokens

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() != 200:
            self._finish(f"status {self.parser.get_status_code()}")
            return
        if not self._workload.stream:  # a whole answer: counted as a request, its tokens were not streamed
            whole = b"".join(self._body)
            self._ended = b'"choices"' in whole or _NATIVE_END in whole
        self._finish(None if self._ended else "answer without its end")

    async def exchange(self) -> None:
        assert self.transport is not None
        self._done = asyncio.get_running_loop().create_future()
        self._pending, self._first, self._ended, self._body = b"", True, False, []
        self._started = time.perf_counter()
        self.transport.write(self._workload.request_bytes())
        await asyncio.wait({self._done}, timeout=self._workload.timeout)
        self._finish("timeout")  # does nothing if it finished in time
        await self._done

    def _finish(self, error: str | None) -> None:
        if self._done is None or self._done.done():
            return
        self._outcome.requests += 1
        if error is not None:
            self._outcome.failed(error)
            self.parser = httptools.HttpResponseParser(self)
            if self.transport is not None:
                self.transport.close()
            self._done.set_exception(ConnectionError(error))
        else:
            self._done.set_result(None)


async def _connection(workload: Workload, outcome: Outcome, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    if workload.stagger:
        await asyncio.sleep(random.uniform(0, workload.stagger))
    sent = 0
    client: _Client | None = None
    while time.perf_counter() < deadline and (workload.requests == 0 or sent < workload.requests):
        if client is None:
            try:
                _, client = await loop.create_connection(lambda: _Client(workload, outcome), "127.0.0.1", workload.port)
            except OSError as exc:
                outcome.failed(f"connect: {type(exc).__name__}")
                return
        sent += 1
        try:
            await client.exchange()
        except ConnectionError:
            client = None  # counted; the next request gets a new connection


async def generate(workload: Workload) -> Outcome:
    outcome = Outcome()
    started = time.perf_counter()
    deadline = started + workload.seconds if workload.seconds else float("inf")
    await asyncio.gather(*(_connection(workload, outcome, deadline) for _ in range(workload.concurrency)))
    outcome.seconds = time.perf_counter() - started
    return outcome


def _body(api: str, stream: bool, tokens: int, delay_ms: int) -> tuple[str, bytes]:
    prompt = f"Count to a thousand. [delay {delay_ms} ms]"  # the fake TGI reads the delay from the prompt
    if api == "native":
        path = "/generate_stream" if stream else "/generate"
        return path, orjson.dumps({"inputs": prompt, "parameters": {"max_new_tokens": tokens}})
    message = [{"role": "user", "content": prompt}]
    return "/v1/chat/completions", orjson.dumps(
        {"model": "bench", "messages": message, "max_tokens": tokens, "stream": stream}
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Load generator for bench/ (one JSON object on stdout).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api", choices=("native", "chat"), required=True)
    parser.add_argument("--no-stream", action="store_true")
    parser.add_argument("--tokens", type=int, default=256, help="tokens asked for per answer")
    parser.add_argument("--delay-ms", type=int, default=0, help="between tokens, asked of the fake TGI")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0, help="send no new request after this")
    parser.add_argument("--requests", type=int, default=0, help="per connection (0: until --seconds)")
    parser.add_argument("--stagger", type=float, default=0.0, help="spread the first requests over S seconds")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a request may take")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1000 held streams need more than 1024 files
    path, body = _body(args.api, not args.no_stream, args.tokens, args.delay_ms)
    workload = Workload(
        args.port,
        path,
        body,
        not args.no_stream,
        args.api == "chat",
        args.concurrency,
        args.seconds,
        args.requests,
        args.stagger,
        args.timeout,
    )
    outcome: list[Outcome] = []

    async def go() -> None:
        outcome.append(await generate(workload))

    run(go())
    print(orjson.dumps(outcome[0].summary()).decode())  # noqa: T201 - the result, for bench.run


if __name__ == "__main__":
    main()
