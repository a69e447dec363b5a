"""Enforce stop strings on streamed text, also when a stop spans several tokens.

TGI keeps the stop text in its output and only notices a stop that the text *ends* with after a token
(finish reason `stop_sequence`, the stop string last in `generated_text`: see the recording
`tests/fixtures/tgi/tgi_snapshot_generate_details_llama_stop_sequence.json`), while OpenAI promises the
returned text never contains it. So the proxy checks every stop itself and holds back the shortest tail that
could still grow into one: a tail is held only while it is a proper prefix of some stop, so unrelated text is
never delayed.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["StopTrimmer", "cut_at_stop"]


def cut_at_stop(text: str, stops: Sequence[str]) -> int | None:
    """Offset of the earliest stop string in `text`, or None."""
    earliest = None
    for stop in stops:
        at = text.find(stop) if stop else -1
        if at >= 0 and (earliest is None or at < earliest):
            earliest = at
    return earliest


class StopTrimmer:
    __slots__ = ("_buffer", "_first_chars", "_longest_prefix", "_prefixes", "_stops", "emitted", "stopped")

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stop for stop in stops if stop)
        self._prefixes = frozenset(stop[:k] for stop in self._stops for k in range(1, len(stop)))
        self._longest_prefix = max((len(stop) - 1 for stop in self._stops), default=0)
        self._first_chars = frozenset(stop[0] for stop in self._stops if len(stop) > 1)
        self._buffer = ""
        self.emitted = 0  # characters released so far
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add generated text; return what can be sent now. After a stop is found, returns ""."""
        if self.stopped:
            return ""
        if not self._stops:
            self.emitted += len(text)
            return text
        buffer = self._buffer + text
        at = cut_at_stop(buffer, self._stops)
        if at is not None:
            self.stopped = True
            self._buffer = ""
            self.emitted += at
            return buffer[:at]
        hold = self._held_tail(buffer)
        self._buffer = buffer[len(buffer) - hold :] if hold else ""
        released = buffer[: len(buffer) - hold]
        self.emitted += len(released)
        return released

    def flush(self) -> str:
        """The held tail, once the generation has ended without completing a stop."""
        rest, self._buffer = self._buffer, ""
        self.emitted += len(rest)
        return rest

    def _held_tail(self, buffer: str) -> int:
        # Per token, on the hot path: only a tail starting with some stop's first character can be held,
        # and `str.find` finds those candidates without a Python-level loop over characters.
        window = max(len(buffer) - self._longest_prefix, 0)
        longest = 0
        for char in self._first_chars:
            at = buffer.find(char, window)
            while at != -1:
                if buffer[at:] in self._prefixes:
                    longest = max(longest, len(buffer) - at)
                    break  # later starts are shorter
                at = buffer.find(char, at + 1)
        return longest
