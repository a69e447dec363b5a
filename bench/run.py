"""`python -m bench`: every figure of docs/benchmark.md for every target, side by side, medians of `--runs` runs.

The fake TGI and the load generator share core 1; the target is pinned to core 0 (with `--workers 2` the
proxy gets both cores). Each run starts every target in turn, so drift on this shared machine spreads over all
of them. Raw figures and medians go to `bench/results/<UTC time>.json`; the table goes to stdout. The 1000 held
streams come last, as a target that cannot hold them may stay clogged for a while.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.procfs import PeakRSS, cpu_seconds, rss_bytes
from bench.report import table
from bench.targets import HELPER_CORE, ROOT, Running, Target, free_port, pinned, start

__all__ = ["main"]

RESULTS = ROOT / "bench" / "results"
TARGETS = {
    "direct": Target("direct", "direct"),
    "relay": Target("relay", "relay"),
    "proxy": Target("proxy", "proxy"),
    "proxy-2w": Target("proxy-2w", "proxy", workers=2),
    "litellm": Target("litellm", "litellm"),
}
MB = 2**20


@dataclass(frozen=True)
class Sizes:
    """How long and how wide each workload is (docs/benchmark.md's table); `--quick` makes it a smoke test."""

    seconds: float = 5.0
    stream_tokens: int = 256
    ttft_tokens: int = 32
    ttft_delay_ms: int = 10
    held_streams: int = 1000
    held_tokens: int = 64
    held_delay_ms: int = 50
    held_timeout: float = 60.0  # an answer takes 64 × 50 ms = 3.2 s; one still open after a minute is an error
    whole_tokens: int = 32


QUICK = Sizes(seconds=0.3, stream_tokens=32, ttft_tokens=4, held_streams=50, held_tokens=4, whole_tokens=8)


def load(port: int, api: str, **options: Any) -> dict[str, Any]:
    """Run the load generator (`bench.load`) on the helper core; its JSON summary."""
    command = [sys.executable, "-m", "bench.load", "--port", str(port), "--api", api]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        command += [flag] if value is True else [] if value is False else [flag, str(value)]
    finished = subprocess.run(pinned(HELPER_CORE, command), cwd=ROOT, capture_output=True, timeout=1800, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"the load generator failed: {finished.stderr.decode()[-2000:]}")
    summary: dict[str, Any] = json.loads(finished.stdout)
    return summary


def measure(running: Running, fake_pid: int, sizes: Sizes) -> dict[str, Any]:
    """One run's figures for one target."""
    api, port, pid = running.target.api, running.port, running.pid
    figures: dict[str, Any] = {"idle_rss_mb": rss_bytes(pid) / MB if pid else None}
    load(port, api, concurrency=4, tokens=8, seconds=0, requests=2)  # warm: connections, caches, /info

    fake_before, target_before = cpu_seconds(fake_pid), cpu_seconds(pid) if pid else 0.0
    stream = load(port, api, concurrency=64, tokens=sizes.stream_tokens, seconds=sizes.seconds)
    tokens = max(stream["tokens"], 1)
    figures["stream"] = stream
    figures["tokens_per_second"] = stream["tokens_per_second"]
    figures["cpu_us_per_token"] = (cpu_seconds(pid) - target_before) / tokens * 1e6 if pid else 0.0
    figures["fake_cpu_us_per_token"] = (cpu_seconds(fake_pid) - fake_before) / tokens * 1e6
    figures["load_cpu_us_per_token"] = stream["cpu_seconds"] / tokens * 1e6

    answer_seconds = sizes.ttft_tokens * sizes.ttft_delay_ms / 1000
    for streams in (16, 2):
        # Streams start spread over one answer's time, as independent clients would: started together, 16
        # streams of equal length stay in step, and TTFT would measure 16 requests landing in one millisecond.
        ttft = load(
            port, api, concurrency=streams, tokens=sizes.ttft_tokens, seconds=sizes.seconds,
            delay_ms=sizes.ttft_delay_ms, stagger=answer_seconds,
        )  # fmt: skip
        figures[f"ttft_{streams}"] = ttft
        figures[f"ttft_p50_ms_{streams}"] = ttft["ttft_p50_ms"]
        figures[f"ttft_p99_ms_{streams}"] = ttft["ttft_p99_ms"]

    before = cpu_seconds(pid) if pid else 0.0
    whole = load(port, api, concurrency=64, tokens=sizes.whole_tokens, seconds=sizes.seconds, no_stream=True)
    figures["whole"] = whole
    figures["requests_per_second"] = whole["requests_per_second"]
    figures["cpu_us_per_request"] = (cpu_seconds(pid) - before) / max(whole["requests"], 1) * 1e6 if pid else 0.0

    # Last: a target that cannot hold them all may stay clogged for a while.
    with PeakRSS(pid or fake_pid) as peak:
        held = load(
            port, api, concurrency=sizes.held_streams, tokens=sizes.held_tokens, seconds=0, requests=1,
            delay_ms=sizes.held_delay_ms, timeout=sizes.held_timeout,
        )  # fmt: skip
    figures["held"] = held
    figures["held_errors"] = held["errors"]
    figures["held_peak_rss_mb"] = peak.peak / MB if pid else None
    figures["errors"] = sum(figures[name]["errors"] for name in ("stream", "ttft_16", "ttft_2", "held", "whole"))
    return figures


MEDIANS = (
    "cpu_us_per_token",
    "tokens_per_second",
    "fake_cpu_us_per_token",
    "load_cpu_us_per_token",
    "ttft_p50_ms_16",
    "ttft_p99_ms_16",
    "ttft_p50_ms_2",
    "ttft_p99_ms_2",
    "held_peak_rss_mb",
    "idle_rss_mb",
    "requests_per_second",
    "cpu_us_per_request",
)


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in MEDIANS:
        values = [run[name] for run in runs if run.get(name) is not None]
        summary[name] = statistics.median(values) if values else None
    summary["held_errors"] = max(run["held_errors"] for run in runs)
    summary["errors"] = sum(run["errors"] for run in runs)
    return summary


def machine() -> dict[str, Any]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), "")  # fmt: skip
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit.stdout.strip(),
    }


def benchmark(targets: Sequence[Target], runs: int, sizes: Sizes, workdir: Path) -> dict[str, Any]:
    fake_port = free_port()
    fake = subprocess.Popen(
        pinned(HELPER_CORE, [sys.executable, "-m", "bench.fake_tgi", "--port", str(fake_port)]), cwd=ROOT
    )
    raw: dict[str, list[dict[str, Any]]] = {target.name: [] for target in targets}
    try:
        time.sleep(1.0)
        for run in range(runs):
            for target in targets:
                sys.stderr.write(f"run {run + 1}/{runs}: {target.name}\n")
                running = start(target, fake_port, workdir)
                try:
                    raw[target.name].append(measure(running, fake.pid, sizes))
                finally:
                    running.stop()
    finally:
        fake.terminate()
        fake.wait()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "sizes": asdict(sizes),
        "runs": runs,
        "medians": {name: medians(results) for name, results in raw.items()},
        "raw": raw,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", action="append", choices=list(TARGETS), help="just these targets (repeatable)")
    parser.add_argument("--skip", action="append", choices=list(TARGETS), default=[], help="leave out (repeatable)")
    parser.add_argument("--quick", action="store_true", help="a smoke test of a few seconds, one run, no LiteLLM")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON results go")
    args = parser.parse_args(argv)
    names = args.only or list(TARGETS)
    skipped = set(args.skip) | ({"litellm"} if args.quick else set())
    targets = [TARGETS[name] for name in names if name not in skipped]
    if "direct" not in [target.name for target in targets]:
        targets.insert(0, TARGETS["direct"])  # every ratio is against it
    sizes, runs = (QUICK, 1) if args.quick else (Sizes(), args.runs)
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        results = benchmark(targets, runs, sizes, Path(workdir))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{results['date'].replace(':', '').replace('+0000', 'Z')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))  # noqa: T201 - the report
    print(f"\nraw figures: {path}")  # noqa: T201
    errors = sum(summary["errors"] for summary in results["medians"].values())
    return 1 if errors and args.quick else 0
