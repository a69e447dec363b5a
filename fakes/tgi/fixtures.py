"""The recorded TGI fixtures in ``tests/fixtures/tgi`` and SSE helpers that read them like TGI clients do.

Provenance of the recordings is in ``tests/fixtures/tgi/SOURCES.md``; docs/tgi-wire.md §9 describes how
TGI's own clients parse ``data:`` lines.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

FIXTURES_DIR = Path(__file__).resolve().parent.parent.parent / "tests" / "fixtures" / "tgi"
RECORDED_STREAM_FIXTURE = "hfjs_tape_generate_stream_llama32_3b_tgi3.sse"


def load_fixture(name: str) -> bytes:
    """Bytes of a file in ``tests/fixtures/tgi`` (e.g. to feed ``fake.replay_sse``)."""
    return (FIXTURES_DIR / name).read_bytes()


def sse_data(body: bytes) -> list[str]:
    """Data payloads of an SSE body read like TGI clients do (§9): ``data:`` plus one optional space,
    comment lines ignored, ``\\n`` or ``\\r\\n`` line endings."""
    events: list[str] = []
    lines: list[str] = []
    for line in re.split(r"\r\n|\r|\n", body.decode()):
        if line == "":
            if lines:
                events.append("\n".join(lines))
                lines = []
        elif line.startswith("data:"):
            value = line[len("data:") :]
            lines.append(value[1:] if value.startswith(" ") else value)
    if lines:
        events.append("\n".join(lines))
    return events


def split_sse_events(body: bytes) -> list[bytes]:
    """``body`` cut after each blank line (event boundary); the pieces concatenate back to ``body``."""
    return [part for part in re.split(rb"(?<=\n\n)|(?<=\r\n\r\n)", body) if part]


def sse_json(body: bytes) -> list[dict[str, Any]]:
    """``sse_data`` decoded as JSON objects."""
    return [orjson.loads(data) for data in sse_data(body)]
