"""What the fake saw: every request (``RecordedRequest``) and the fate of every generation (``StreamRecord``)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # the parsed JSON body; None if absent or not JSON
    raw_body: bytes
    received_at: float  # time.monotonic()


@dataclass(eq=False)
class StreamRecord:
    """What happened to one ``/generate_stream`` (``stream``) or ``/generate`` request.

    ``outcome``: running | complete | disconnected | validation_error | overloaded | error_event | eof |
    failed (fail_status) | rejected (415/400/422 plain text) | replayed.
    """

    path: str
    stream: bool
    request: RecordedRequest = field(repr=False)
    started_at: float
    finished_at: float | None = None
    disconnected_at: float | None = None
    events_sent: int = 0  # SSE data events written (tokens, final, error); keep-alive comments excluded
    tokens_generated: int = 0  # tokens "computed" so far (stream: token events sent)
    outcome: str = "running"
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def disconnected(self) -> bool:
        return self.disconnected_at is not None

    def wait_finished(self, timeout: float) -> bool:
        """Block (any thread) until the handler returned."""
        return self._done.wait(timeout)

    def _finish(self, outcome: str) -> None:
        self.outcome = outcome
        self.finished_at = time.monotonic()
        self._done.set()
