"""`python -m bench --quick` end to end, as a smoke test that keeps the benchmark working (no timing asserted:
figures are the benchmark's job, not the test suite's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[1]


def test_the_quick_benchmark_runs_every_part_without_errors(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--skip", "proxy-2w", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    [written] = tmp_path.glob("*.json")
    results = json.loads(written.read_text())
    assert set(results["medians"]) == {"direct", "relay", "proxy"}
    for name, figures in results["medians"].items():
        assert figures["errors"] == 0, name
        assert figures["tokens_per_second"] > 0 and figures["requests_per_second"] > 0, name
    proxy = results["raw"]["proxy"][0]
    assert proxy["stream"]["tokens"] == proxy["stream"]["requests"] * results["sizes"]["stream_tokens"]
    assert proxy["held"]["requests"] == results["sizes"]["held_streams"]
    assert "| proxy |" in finished.stdout
