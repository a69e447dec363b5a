"""Soak test (not run in CI): many concurrent streams through the real proxy to upstreams that misbehave.

    .venv/bin/python -m scripts.soak                      # about 75 s: 48 clients for 60 s, seed 1
    .venv/bin/python -m scripts.soak --concurrency 96 --duration 300 --seed 7 --workdir /tmp/soak

Starts the faulty fake upstream (`scripts/soak_upstream.py`: TGI replicas drawing a random fault per request,
a replica that resets every connection, and an address where nothing listens) and the proxy
(`python -m server`) with short deadlines, each in its own process; runs the load of `scripts/soak_client.py`;
then prints how the answers ended, the error codes, the proxy's memory before and after, and what the
upstream and the proxy still hold open once the clients are gone. Exits 1 if any answer was broken or
anything was left open; the proxy's config and log are then kept (always, with --workdir).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from scripts.soak_client import BROKEN, CLEAN_ERROR, CLIENT_LEFT, COMPLETE, Load, Outcome, run_load

ROOT = Path(__file__).resolve().parent.parent
MODEL = "soak"
# Short deadlines so that every fault resolves in seconds; see UpstreamConfig in server/config.py.
UPSTREAM = {
    "connect_timeout": 1.0,
    "first_token_timeout": 3.0,
    "idle_timeout": 1.0,
    "total_timeout": 5.0,
    "retries": 2,
    "backoff": 0.05,
    "backoff_max": 0.5,
    "cooldown": 1.0,
    "max_concurrency": 32,
    "max_queue": 8,
    "queue_timeout": 2.0,
}
# The longest an answer may take: the deadlines a request can meet one after the other (fetching the
# upstream's limits, the generation, then counting prompt tokens for `usage` when the upstream did not say),
# plus a margin for the proxy's own work on a busy machine.
ANSWER_BOUND = (
    UPSTREAM["connect_timeout"]
    + UPSTREAM["total_timeout"]
    + min(UPSTREAM["first_token_timeout"], UPSTREAM["total_timeout"])
    + 2.0
)
# Once every client has its answer (or left), the proxy has no reason to keep an upstream call: the upstream
# must see them all closed within `UPSTREAM_GRACE`; `SETTLE_SECONDS` (beyond every deadline) is when the
# report gives up waiting.
UPSTREAM_GRACE = 1.0
SETTLE_SECONDS = 10.0
STARTUP_SECONDS = 30.0
TCP_STATES = {"01": "ESTABLISHED", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT", "08": "CLOSE_WAIT"}
LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")  # how each record of the proxy's plain log starts


@dataclass(frozen=True)
class Leftovers:
    upstream_open_at_end: int  # upstream requests open when the last client had its answer
    settle_seconds: float  # until the upstream saw all of them closed
    upstream_open_requests: int
    upstream_open: list[str]  # what each of them is
    upstream_generations: int
    proxy_requests_in_flight: float  # the scrape itself counts 1
    proxy_upstream_in_flight: float
    proxy_queued: float

    @property
    def leaked(self) -> bool:
        return bool(
            self.settle_seconds > UPSTREAM_GRACE
            or self.upstream_open_requests
            or self.upstream_generations
            or self.proxy_requests_in_flight > 1
            or self.proxy_upstream_in_flight
            or self.proxy_queued
        )


def proxy_socket(pid: int, port: int) -> str:
    """Whether the proxy process still holds its end (local `port`) of a connection to the upstream: tells a
    connection the proxy forgot to close from a close the upstream did not notice."""
    states = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            states[fields[9]] = TCP_STATES.get(fields[3], fields[3])
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            held.add(os.readlink(fd))
    for inode, state in states.items():
        if f"socket:[{inode}]" in held:
            return f"the proxy still holds its socket (port {port}, {state})"
    return f"the proxy holds no socket on port {port} ({', '.join(states.values()) or 'none left'})"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    return {key: int(value) for key, value in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE)}


@contextlib.asynccontextmanager
async def upstream_process(replicas: int, seed: int) -> AsyncIterator[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.soak_upstream",
        f"--replicas={replicas}",
        f"--seed={seed}",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), STARTUP_SECONDS)
        yield dict(json.loads(line))
    finally:
        process.stdin.close()  # the upstream serves until its stdin closes
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def proxy_process(config: dict[str, Any], workdir: Path) -> AsyncIterator[tuple[str, int, Path]]:
    """The proxy on a free port; yields its URL, its pid and its log file."""
    config_path, log_path = workdir / "config.yaml", workdir / "proxy.log"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", "--config", str(config_path), cwd=ROOT, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{config['server']['port']}"
    try:
        await wait_until_up(url, process)
        yield url, process.pid, log_path
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def wait_until_up(url: str, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise SystemExit(f"the proxy exited with {process.returncode} at start; see its log")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/health")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise SystemExit(f"the proxy did not answer /health within {STARTUP_SECONDS:g} s")


def proxy_config(urls: list[str], port: int) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": MODEL,
                "upstream": {"kind": "tgi", "urls": urls, **UPSTREAM},
                "chat_template": "chatml",
            }
        ],
        "server": {"port": port, "log_level": "warning", "access_log": False, "ping_seconds": 1, "ready_interval": 1},
    }


async def leftovers(proxy_url: str, pid: int, upstream_url: str) -> Leftovers:
    """What is still open once the clients are gone: the upstream's requests are polled until they are all
    closed (or `SETTLE_SECONDS` pass), then the proxy's gauges are read."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as http:
        at_end: int | None = None
        while True:
            replicas = (await http.get(f"{upstream_url}/_soak/stats")).json()
            still_open = [
                f"{request['fault']} {request['path']} open for {request['seconds']:.1f} s; "
                + proxy_socket(pid, request["client_port"])
                for replica in replicas
                for request in replica["open_requests"]
            ]
            open_requests = len(still_open)
            generations = sum(replica["in_flight"] for replica in replicas)
            at_end = open_requests if at_end is None else at_end
            settled = time.monotonic() - started
            if (open_requests == 0 and generations == 0) or settled > SETTLE_SECONDS:
                break
            await asyncio.sleep(0.05)
        metrics = (await http.get(f"{proxy_url}/metrics")).text

    def gauge(name: str) -> float:
        values = re.findall(rf"^hf_openai_proxy_{name}(?:{{[^}}]*}})? (\S+)$", metrics, re.MULTILINE)
        return sum(float(value) for value in values)

    return Leftovers(
        at_end,
        settled,
        open_requests,
        still_open,
        generations,
        gauge("requests_in_flight"),
        gauge("upstream_requests_in_flight"),
        gauge("queued_requests"),
    )


async def faults_served(upstream_url: str) -> Counter[str]:
    async with httpx.AsyncClient(timeout=5) as http:
        replicas = (await http.get(f"{upstream_url}/_soak/stats")).json()
    served: Counter[str] = Counter()
    for replica in replicas:
        served.update(replica["served"])
    return served


def proxy_log_problems(log_path: Path) -> list[str]:
    """Records of the proxy's log at ERROR or above, each with the traceback that follows it: each is a bug."""
    problems: list[str] = []
    for line in log_path.read_text(errors="replace").splitlines():
        if " ERROR " in line or " CRITICAL " in line:
            problems.append(line)
        elif problems and not LOG_RECORD.match(line):  # a traceback's line belongs to the record before it
            problems[-1] += "\n    " + line
    return problems


def report(
    args: argparse.Namespace,
    outcomes: list[Outcome],
    seconds: float,
    lags: tuple[float, float],
    memory: tuple[dict[str, int], dict[str, int]],
    served: Counter[str],
    left: Leftovers,
    problems: list[str],
) -> str:
    kinds = Counter(outcome.kind for outcome in outcomes)
    streams = Counter(outcome.kind for outcome in outcomes if outcome.call.stream)
    out = [
        f"soak: {len(outcomes)} requests in {seconds:.0f} s ({len(outcomes) / seconds:.1f}/s), "
        f"concurrency {args.concurrency}, seed {args.seed}, {os.cpu_count()} cores",
        "",
        f"  {'outcome':<12} {'all':>7} {'stream':>7} {'json':>7}",
    ]
    for kind in (COMPLETE, CLEAN_ERROR, CLIENT_LEFT, BROKEN):
        out.append(f"  {kind:<12} {kinds[kind]:>7} {streams[kind]:>7} {kinds[kind] - streams[kind]:>7}")
    errors = Counter(outcome.detail for outcome in outcomes if outcome.kind == CLEAN_ERROR)
    out += ["", "clean errors (HTTP status + code, or `event` + code of an error event in a 200 stream):"]
    out += [f"  {count:>6}  {detail}" for detail, count in errors.most_common()]
    slowest = max((outcome for outcome in outcomes if outcome.kind != CLIENT_LEFT), key=lambda o: o.seconds)
    out.append(
        f"slowest answer: {slowest.seconds:.2f} s ({slowest.call.describe()}: {slowest.detail}); broken beyond "
        f"{ANSWER_BOUND:g} s; "
        f"the clients' event loop lagged up to {lags[0]:.2f} s, the proxy's /health took up to {lags[1]:.2f} s"
    )
    broken = [outcome for outcome in outcomes if outcome.kind == BROKEN]
    if broken:
        out += ["", "broken answers (first 20):"]
        out += [
            f"  {outcome.call.describe()} after {outcome.seconds:.2f} s: {outcome.detail}" for outcome in broken[:20]
        ]
    out += ["", "faults the upstream drew (generation requests):"]
    out += ["  " + ", ".join(f"{name} {count}" for name, count in served.most_common())]
    before, after = memory
    out += [
        "",
        f"proxy memory: RSS {before['VmRSS'] / 1024:.1f} MiB before, {after['VmRSS'] / 1024:.1f} MiB after "
        f"(peak {after['VmHWM'] / 1024:.1f} MiB)",
        f"upstream requests open when the last client was done: {left.upstream_open_at_end}, all closed after "
        f"{left.settle_seconds:.2f} s (a leak beyond {UPSTREAM_GRACE:g} s)",
        *(f"  upstream request still open: {request}" for request in left.upstream_open),
        f"left open after the clients were gone: upstream requests {left.upstream_open_requests}, upstream "
        f"generations {left.upstream_generations}; proxy requests in flight {left.proxy_requests_in_flight:g} "
        f"(1 is the metrics scrape), upstream calls {left.proxy_upstream_in_flight:g}, queued {left.proxy_queued:g}",
        f"proxy log records at ERROR or above: {len(problems)}",
    ]
    out += [f"  {problem}" for problem in problems[:5]]
    return "\n".join(out)


async def soak(args: argparse.Namespace) -> int:
    workdir: Path = args.workdir or Path(tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    async with upstream_process(args.replicas, args.seed) as upstream:
        nowhere = f"http://127.0.0.1:{free_port()}"  # a replica that is down: connections refused
        urls = [*upstream["replicas"], upstream["slammer"], nowhere]
        async with proxy_process(proxy_config(urls, free_port()), workdir) as (proxy_url, pid, log_path):
            before = memory_kib(pid)
            load = Load(
                model=MODEL,
                concurrency=args.concurrency,
                duration=args.duration,
                requests=args.requests,
                leave_share=args.leave,
                answer_bound=ANSWER_BOUND,
                seed=args.seed,
            )
            started = time.monotonic()
            outcomes, client_lag, slowest_health = await run_load(proxy_url, load)
            seconds = time.monotonic() - started
            left = await leftovers(proxy_url, pid, upstream["replicas"][0])
            after = memory_kib(pid)
            served = await faults_served(upstream["replicas"][0])
            problems = proxy_log_problems(log_path)
    sys.stdout.write(
        report(args, outcomes, seconds, (client_lag, slowest_health), (before, after), served, left, problems) + "\n"
    )
    failed = any(outcome.kind == BROKEN for outcome in outcomes) or left.leaked
    if failed or problems or args.workdir:
        sys.stdout.write(f"the proxy's config and log are in {workdir}\n")
    else:
        shutil.rmtree(workdir)
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=48, help="clients asking at once (default 48)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--requests", type=int, help="stop after this many requests (default: no limit)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the faults and the requests (default 1)")
    parser.add_argument("--replicas", type=int, default=2, help="faulty TGI replicas (default 2)")
    parser.add_argument("--workdir", type=Path, help="keep the proxy's config and log here (default: a temp dir)")
    parser.add_argument("--leave", type=float, default=0.1, help="share of clients leaving early (default 0.1)")
    raise SystemExit(asyncio.run(soak(parser.parse_args())))


if __name__ == "__main__":
    main()
