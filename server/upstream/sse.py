"""One byte-level Server-Sent Events decoder for everything the proxy reads from upstreams.

It accepts what TGI has sent across versions (docs/tgi-wire.md §1): `data: ` with the space (axum 0.7,
TGI >= 2.1) and without it (axum 0.6), `\\n`, `\\r\\n` or `\\r` line ends, `:` keep-alive comments, and
fields it does not use (`event:`, `id:`, `retry:`), which are ignored. Events are dispatched on a blank line,
per https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation; multi-line
data is joined with `\\n`. Payloads stay bytes so orjson parses them without a decode step.
"""

from __future__ import annotations

__all__ = ["SSEDecoder"]


class SSEDecoder:
    __slots__ = ("_after_cr", "_data", "_pending")

    def __init__(self) -> None:
        self._pending = b""
        self._data: list[bytes] = []
        self._after_cr = False  # the last chunk ended in CR: an LF starting the next one is its CRLF's second half

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add received bytes; return the data of every event completed by them."""
        if self._after_cr and chunk:
            self._after_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buffer = self._pending + chunk if self._pending else chunk
        if b"\r" in buffer:
            # A trailing CR ends its line now (a lone CR is a line end, and an event must not wait for the
            # next chunk); only an LF that follows it is remembered as already counted.
            self._after_cr = buffer.endswith(b"\r")
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buffer.split(b"\n")
        self._pending = lines.pop()
        events: list[bytes] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data.clear()
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value[:1] == b" " else value)
            # Anything else is a comment (`:`) or a field the proxy does not use.
        return events

    def has_partial_event(self) -> bool:
        """True when bytes of an unfinished event are buffered (the upstream stopped mid-event)."""
        return bool(self._data or self._pending)
