"""``FakeTGISettings``: every knob of the fake (model, ``/info`` limits, framing, timing, fault injection)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from fakes.tgi.model import DEFAULT_SCRIPT, EOS_TEXT


@dataclass(eq=False)
class FakeTGISettings:
    """Every knob of the fake; all are plain attributes that tests may change at any time."""

    # model
    script: list[str] = field(default_factory=lambda: list(DEFAULT_SCRIPT))
    eos_text: str | None = EOS_TEXT
    # /info limits (router defaults, §7)
    model_id: str = "fake/model"
    max_input_tokens: int = 4095
    max_total_tokens: int = 4096
    max_stop_sequences: int = 4
    max_top_n_tokens: int = 5
    max_best_of: int = 2
    max_concurrent_requests: int = 128
    max_client_batch_size: int = 4
    validation_workers: int = 2
    version: str = "3.3.6"
    healthy: bool = True  # False: /health answers 503 {"error":"unhealthy","error_type":"healthcheck"}
    # framing of /generate_stream
    framing: Literal["modern", "legacy"] = "modern"  # legacy = TGI <= 2.0: `data:` no space, no index
    line_ending: Literal["\n", "\r\n"] = "\n"
    keepalive_every: int = 0  # emit a `:` comment before every Nth data event (0 = never)
    # timing
    token_delay: float = 0.0  # seconds before each token (stream event / non-stream generation step)
    headers_delay: float = 0.0  # seconds before /generate* answers start
    # fault injection (/generate and /generate_stream)
    fail_status: int | None = None  # answer with this status and fail_body instead of generating
    fail_body: dict[str, Any] | bytes | None = None  # None: default_fail_body(fail_status)
    fail_headers: dict[str, str] = field(default_factory=dict)  # e.g. {"retry-after": "1"}
    fail_times: int | None = None  # only the first N generation requests fail (None: all of them)
    error_event_after: int | None = None  # stream: N token events then a generation error event; /generate: 424
    eof_after: int | None = None  # stream: N token events then end of body; /generate: 500 incomplete
    stall_after: int | None = None  # stream: N token events, then silence until the client leaves
    replay_sse: bytes | None = None  # serve these exact bytes as every /generate_stream body
