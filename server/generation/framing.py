"""Server-Sent Events framing: every byte that frames an event on the proxy's streams, in one place.

The framing is the W3C/WHATWG event-stream format (https://html.spec.whatwg.org/multipage/server-sent-events.html):
a `data:` line per event, a blank line after it, `:` lines as comments that clients ignore. OpenAI's streams are
data-only and end with `data: [DONE]` (https://platform.openai.com/docs/api-reference/chat-streaming); formats
that name their events (`event:` lines, as the Responses API does) add their framing here.
"""

from __future__ import annotations

__all__ = ["DATA", "DONE", "END_OF_EVENT", "PING", "data_event"]

DATA = b"data: "
END_OF_EVENT = b"\n\n"
# OpenAI's end of stream, after the last chunk (and after an in-band error).
DONE = b"data: [DONE]\n\n"
# The comment sent at once when the first token is slow, so the client and any proxy in between see bytes.
PING = b": ping\n\n"


def data_event(payload: bytes) -> bytes:
    """One data-only event; `payload` is JSON, which never contains a raw newline."""
    return DATA + payload + END_OF_EVENT
