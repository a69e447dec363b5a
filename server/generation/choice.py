"""One choice's generation, token by token: what text to send, which logprobs go with it, and why it ended.

Pure state, no I/O; the stream and non-stream paths both use it, so they agree byte for byte. Rules:
special tokens (EOS such as `</s>`, `<|eot_id|>`; TGI marks them `"special": true` in each `Token`, see TGI's
`router/src/lib.rs`) are never text; stop strings are cut by `StopTrimmer`; TGI's finish reasons map to OpenAI's
(`server.generation.finish`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from server.generation.finish import final_finish_reason
from server.generation.stops import StopTrimmer
from server.upstream.tgi_wire import Details, StreamDetails, Token

__all__ = ["ChoiceState", "Piece", "TokenLogprob"]

# A token's logprob with its alternatives: (text, logprob, [(text, logprob), ...]).
TokenLogprob = tuple[str, float, list[tuple[str, float]]]

# OpenAI's stand-in for "very unlikely", used where TGI reports NaN as null.
UNKNOWN_LOGPROB = -9999.0


@dataclass(slots=True)
class Piece:
    """Text ready to send now, with the logprobs of the tokens it completes."""

    text: str
    logprobs: list[TokenLogprob] | None


class ChoiceState:
    __slots__ = ("_pending", "_stops", "_text_end", "_want_logprobs", "generated_tokens", "stopped_by_proxy")

    def __init__(self, stops: Sequence[str], *, want_logprobs: bool) -> None:
        self._stops = StopTrimmer(stops)
        self._want_logprobs = want_logprobs
        self._pending: list[tuple[int, int, TokenLogprob]] = []  # (start, end, logprob) not yet released
        self._text_end = 0  # characters of non-special token text seen so far
        self.generated_tokens = 0
        self.stopped_by_proxy = False

    @property
    def stopped(self) -> bool:
        return self._stops.stopped

    def add(self, token: Token, top_tokens: Sequence[Token] | None = None) -> Piece:
        self.generated_tokens += 1
        if token["special"] or self._stops.stopped:
            return Piece("", None)
        text = token["text"]
        if self._want_logprobs:
            start, self._text_end = self._text_end, self._text_end + len(text)
            self._pending.append((start, self._text_end, _logprob(token, top_tokens)))
        released = self._stops.feed(text)
        if self._stops.stopped:
            self.stopped_by_proxy = True
        return Piece(released, self._release(self._stops.emitted, stopped=self._stops.stopped))

    def finish(self) -> Piece:
        """The held-back text once the upstream has ended."""
        rest = self._stops.flush()
        return Piece(rest, self._release(self._stops.emitted, stopped=True))

    def outcome(self, details: StreamDetails | Details | None) -> tuple[str, int]:
        """OpenAI's finish reason and the completion tokens, from TGI's final details when they came.

        A stop the proxy found is `stop` whatever TGI said; without final details (the proxy stopped the
        stream first, or the upstream ignored `details`) the tokens seen are all there is to count.
        """
        reason = "stop" if self.stopped_by_proxy else final_finish_reason(details and details["finish_reason"])
        return reason, details["generated_tokens"] if details else self.generated_tokens

    def _release(self, upto: int, *, stopped: bool) -> list[TokenLogprob] | None:
        if not self._want_logprobs:
            return None
        # A token is released when its text is fully sent; at a stop, every token the sent text touches.
        cut = 0
        for start, end, _ in self._pending:
            if end <= upto or (stopped and start < upto):
                cut += 1
            else:
                break
        released = self._pending[:cut]
        self._pending = [] if stopped else self._pending[cut:]
        return [entry for _, _, entry in released]


def _logprob(token: Token, top_tokens: Sequence[Token] | None) -> TokenLogprob:
    alternatives = [(t["text"], _value(t["logprob"])) for t in top_tokens or ()]
    return token["text"], _value(token["logprob"]), alternatives


def _value(logprob: float | None) -> float:
    return UNKNOWN_LOGPROB if logprob is None else logprob
