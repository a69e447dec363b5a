"""The fake's deterministic tokenizer and "model".

The default script replays the recorded TGI 3 stream (``RECORDED_STREAM_FIXTURE``), reusing its token ids and
logprobs position by position; other texts get stable CRC32-based ids and logprobs.  ``run_model`` stops with
TGI's ``StoppingCriteria`` order (§8): length, then EOS, then stop sequences on the last ``STOP_WINDOW``
generated characters.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from fakes.tgi.fixtures import RECORDED_STREAM_FIXTURE, load_fixture, sse_json

if TYPE_CHECKING:
    from fakes.tgi.settings import FakeTGISettings
    from fakes.tgi.validation import ValidRequest


EOS_ID = 2
EOS_TEXT = "</s>"
STOP_WINDOW = 300  # TGI keeps the last 300 characters for stop-sequence matching (§8)


@dataclass(frozen=True)
class Token:
    """TGI's ``Token`` (key order id, text, logprob, special)."""

    id: int
    text: str
    logprob: float
    special: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "logprob": self.logprob, "special": self.special}


def _load_recording() -> tuple[tuple[Token, ...], str]:
    events = sse_json(load_fixture(RECORDED_STREAM_FIXTURE))
    tokens = tuple(Token(**event["token"]) for event in events)
    generated = "".join(token.text for token in tokens)
    full_text: str = events[-1]["generated_text"]
    assert full_text.endswith(generated), "recorded stream: final text must end with the token texts"
    return tokens, full_text[: len(full_text) - len(generated)]


RECORDED_TOKENS, RECORDED_PROMPT = _load_recording()
DEFAULT_SCRIPT: tuple[str, ...] = tuple(token.text for token in RECORDED_TOKENS)
_RECORDED_IDS: dict[str, int] = {token.text: token.id for token in RECORDED_TOKENS}
_ALTERNATIVES = (" the", ",", " and", ".", " a", " of", "\n", " to", " is", " in", " that", " it", "1", " -")


@dataclass(frozen=True)
class Piece:
    """One prompt token: ``/tokenize`` item (character offsets)."""

    id: int
    text: str
    start: int
    stop: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "start": self.start, "stop": self.stop}


def token_id(text: str) -> int:
    """Stable id for a token text: the recorded id when the tape has it, else CRC32-based (>= 2000)."""
    recorded = _RECORDED_IDS.get(text)
    return recorded if recorded is not None else 2000 + zlib.crc32(text.encode()) % 120_000


def _logprob(position: int, text: str) -> float:
    return -round(0.05 + zlib.crc32(f"{position}\x00{text}".encode()) % 2950 / 1000, 4)


def tokenize(text: str) -> list[Piece]:
    """The fake tokenizer: maximal non-whitespace runs; whitespace-only text is one token; "" is none."""
    pieces = [Piece(token_id(m.group()), m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    if not pieces and text:
        pieces = [Piece(token_id(text), text, 0, len(text))]
    return pieces


def model_token(position: int, script: Sequence[str], eos_text: str | None) -> Token:
    """The token generated at 0-based ``position``: the script, then EOS (or the script again)."""
    if eos_text is not None and position >= len(script):
        return Token(EOS_ID, eos_text, _logprob(position, eos_text), special=True)
    if not script:
        raise ValueError("FakeTGI.script is empty and eos_text is None: nothing to generate")
    text = script[position % len(script)]
    if position < len(RECORDED_TOKENS) and RECORDED_TOKENS[position].text == text:
        return RECORDED_TOKENS[position]
    return Token(token_id(text), text, _logprob(position, text))


def top_tokens(chosen: Token, n: int) -> tuple[Token, ...]:
    """``n`` candidates for one step: the chosen token first, alternatives with lower logprobs."""
    alternatives = [text for text in _ALTERNATIVES if text != chosen.text][: max(0, n - 1)]
    others = (
        Token(token_id(text), text, round(chosen.logprob - 0.5 * rank, 4)) for rank, text in enumerate(alternatives, 1)
    )
    return (chosen, *others)[:n]


@dataclass(frozen=True)
class Generation:
    tokens: tuple[Token, ...]
    top_tokens: tuple[tuple[Token, ...], ...]  # empty unless top_n_tokens
    finish_reason: Literal["length", "eos_token", "stop_sequence"]
    generated_text: str  # special tokens skipped; prompt prepended if return_full_text
    seed: int | None  # as reported in details


def run_model(settings: FakeTGISettings, request: ValidRequest, seed: int | None = None) -> Generation:
    """Generate with TGI's ``StoppingCriteria`` order: length, then EOS, then stop sequences (§8)."""
    stops = [re.compile(re.escape(stop) + "$") for stop in request.stop]
    tokens: list[Token] = []
    window = ""
    finish: Literal["length", "eos_token", "stop_sequence"] | None = None
    while finish is None:
        token = model_token(len(tokens), settings.script, settings.eos_text)
        tokens.append(token)
        if len(tokens) >= request.max_new_tokens:
            finish = "length"
        elif token.special:
            finish = "eos_token"
        elif stops:
            window = (window + token.text)[-STOP_WINDOW:]
            if any(stop.search(window) for stop in stops):
                finish = "stop_sequence"
    text = "".join(token.text for token in tokens if not token.special)
    tops = tuple(top_tokens(token, request.top_n_tokens) for token in tokens) if request.top_n_tokens else ()
    return Generation(
        tokens=tuple(tokens),
        top_tokens=tops,
        finish_reason=finish,
        generated_text=(request.inputs + text) if request.return_full_text else text,
        seed=(request.seed if seed is None else seed) if request.sampling else None,
    )
