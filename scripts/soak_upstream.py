"""The soak test's faulty upstream: fake TGI replicas that pick a random fault for every generation request.

Run by `scripts/soak.py` in a process of its own (so that its CPU and memory are not the proxy's):

    python -m scripts.soak_upstream --replicas 2 --seed 1

prints one JSON line `{"replicas": [url, ...], "slammer": url}` once everything listens, then serves until
its stdin closes. Each replica is a `fakes.tgi.FakeTGI` per fault, behind a dispatcher drawing the fault
from a seeded RNG; `GET /_soak/stats` on any replica reports every replica's counters (requests still open,
generations in flight, faults served). The "slammer" accepts connections and closes them without a word.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from fakes.loopback import LoopbackServer
from fakes.tgi import (
    JSON_HEADERS,
    RECORDED_STREAM_FIXTURE,
    FakeTGI,
    Receive,
    Scope,
    Send,
    load_fixture,
    split_sse_events,
)

GENERATION_PATHS = ("/generate", "/generate_stream")
STATS_PATH = "/_soak/stats"
TOKEN_DELAY = 0.02  # a healthy upstream's pace: streams last a fraction of a second


@dataclass(frozen=True)
class Fault:
    name: str
    weight: int
    settings: dict[str, Any] = field(default_factory=dict)  # FakeTGI knobs
    paths: tuple[str, ...] = GENERATION_PATHS


def _cut_after_tokens() -> bytes:
    """Three recorded TGI events, then half of the fourth: a connection lost in the middle of an event."""
    events = split_sse_events(load_fixture(RECORDED_STREAM_FIXTURE))
    return b"".join(events[:3]) + events[3][: len(events[3]) // 2]


def faults() -> list[Fault]:
    """What an upstream may do to a generation request, and how often (weights out of about 100)."""
    stream, generate = ("/generate_stream",), ("/generate",)
    return [
        Fault("none", 45),
        Fault(
            "http_500",
            5,
            {"fail_status": 500, "fail_body": b"internal failure", "fail_headers": {"content-type": "text/plain"}},
        ),
        Fault(
            "overloaded_429",
            5,
            {
                "fail_status": 429,
                "fail_headers": {"retry-after": "1"},
                "fail_body": {"error": "Model is overloaded", "error_type": "overloaded"},
            },
        ),
        Fault(
            "loading_503",
            4,
            {
                "fail_status": 503,
                "fail_body": {"error": "Model fake/model is currently loading", "estimated_time": 0.5},
            },
        ),
        Fault("hang_before_headers", 3, {"headers_delay": 3600}),
        Fault("stall_mid_stream", 4, {"stall_after": 2}, stream),
        Fault("slow_answer", 2, {"token_delay": 0.5}, generate),
        Fault("eof_mid_stream", 4, {"eof_after": 3}),
        Fault("garbage", 4, {"fail_status": 200, "fail_body": b"\x00\xff garbage, neither JSON nor SSE"}),
        Fault("cut_before_first_event", 3, {"replay_sse": b'data: {"index":1,"token":{"id":1,"te'}, stream),
        Fault("cut_mid_event", 3, {"replay_sse": _cut_after_tokens()}, stream),
        Fault("cut_json", 3, {"fail_status": 200, "fail_body": b'{"generated_text":"Hel'}, generate),
        Fault("slow_trickle", 5, {"token_delay": 0.3}, stream),
        Fault("error_event", 4, {"error_event_after": 3}),
        Fault("abort_after_headers", 4),  # served by the dispatcher itself, see `_abort`
    ]


class _Abort(Exception):
    """Raised after the headers went out, so that uvicorn drops the connection mid-body."""


class FaultyReplica:
    """ASGI app: generation requests go to the fake of a randomly drawn fault; everything else to a healthy one."""

    def __init__(self, seed: int) -> None:
        self._faults = faults()
        self._fakes = {fault.name: FakeTGI(**{"token_delay": TOKEN_DELAY, **fault.settings}) for fault in self._faults}
        self._rng = random.Random(seed)
        # fault, path, the client's (the proxy's) port and the start of each request not ended yet
        self._open: dict[object, tuple[str, str, int, float]] = {}
        self.served: Counter[str] = Counter()

    @property
    def in_flight(self) -> int:
        return sum(fake.in_flight for fake in self._fakes.values())

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "open_requests": [
                {"fault": fault, "path": path, "client_port": port, "seconds": now - start}
                for fault, path, port, start in self._open.values()
            ],
            "in_flight": self.in_flight,
            "served": dict(self.served),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        healthy = self._fakes["none"]
        if scope["type"] != "http" or scope["path"] not in GENERATION_PATHS:
            await healthy(scope, receive, send)
            return
        candidates = [fault for fault in self._faults if scope["path"] in fault.paths]
        fault = self._rng.choices(candidates, weights=[fault.weight for fault in candidates])[0]
        self.served[fault.name] += 1
        key = object()
        client_port = scope["client"][1] if scope.get("client") else 0
        self._open[key] = (fault.name, scope["path"], client_port, time.monotonic())
        try:
            if fault.name == "abort_after_headers":
                await _abort(scope, receive, send)
            else:
                await self._fakes[fault.name](scope, receive, send)
        finally:
            del self._open[key]


async def _abort(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body", False):
        pass
    if scope["path"] == "/generate_stream":
        headers, body = [(b"content-type", b"text/event-stream")], b'data: {"index":1,"tok'
    else:
        headers, body = [*JSON_HEADERS, (b"content-length", b"4096")], b'{"generated_text":"'
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": True})
    raise _Abort


class Stats:
    """`GET /_soak/stats`, answered before the replica's own routes."""

    def __init__(self, app: FaultyReplica, replicas: list[FaultyReplica]) -> None:
        self._app = app
        self._replicas = replicas

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == STATS_PATH:
            body = json.dumps([replica.stats() for replica in self._replicas]).encode()
            await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
            await send({"type": "http.response.body", "body": body})
            return
        await self._app(scope, receive, send)


async def _slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    del reader
    writer.transport.abort()  # RST, no answer at all


async def serve(replica_count: int, seed: int) -> None:
    replicas = [FaultyReplica(seed * 1000 + index) for index in range(replica_count)]
    with contextlib.ExitStack() as stack:
        # A roomy backlog: the proxy opens many connections at once at the start of the run. `_Abort` makes
        # uvicorn log "Exception in ASGI application" by design: only critical lines would be news.
        servers = [
            stack.enter_context(
                LoopbackServer(Stats(replica, replicas), lifespan="off", backlog=4096, log_level="critical")
            )
            for replica in replicas
        ]
        slammer = await asyncio.start_server(_slam, "127.0.0.1", 0)
        port = slammer.sockets[0].getsockname()[1]
        ready = {"replicas": [server.url for server in servers], "slammer": f"http://127.0.0.1:{port}"}
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin (or dies)
        slammer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(serve(args.replicas, args.seed))


if __name__ == "__main__":
    main()
