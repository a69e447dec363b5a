"""ChoiceState: text and logprobs of one choice, token by token."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from server.generation.choice import UNKNOWN_LOGPROB, ChoiceState, Piece, TokenLogprob
from server.generation.finish import final_finish_reason
from server.upstream.tgi_wire import Token


def tok(text: str, logprob: float | None = -0.5, *, special: bool = False, id: int = 1) -> Token:
    return {"id": id, "text": text, "logprob": logprob, "special": special}


def run(state: ChoiceState, tokens: Sequence[Token]) -> tuple[list[Piece], Piece]:
    pieces = [state.add(token) for token in tokens]
    return pieces, state.finish()


def all_text(pieces: Sequence[Piece], last: Piece) -> str:
    return "".join(p.text for p in pieces) + last.text


def all_logprobs(pieces: Sequence[Piece], last: Piece) -> list[TokenLogprob]:
    out: list[TokenLogprob] = []
    for piece in [*pieces, last]:
        assert piece.logprobs is not None
        out.extend(piece.logprobs)
    return out


@pytest.mark.parametrize(
    ("tgi", "openai"), [("eos_token", "stop"), ("stop_sequence", "stop"), ("length", "length"), (None, "stop")]
)
def test_finish_reason_mapping(tgi: str | None, openai: str) -> None:
    assert final_finish_reason(tgi) == openai


def test_special_tokens_never_produce_text() -> None:
    state = ChoiceState([], want_logprobs=True)
    pieces, last = run(state, [tok("Hi"), tok("</s>", special=True), tok("<|eot_id|>", special=True)])
    assert all_text(pieces, last) == "Hi"
    assert pieces[1] == Piece("", None)
    assert pieces[2] == Piece("", None)
    assert [entry[0] for entry in all_logprobs(pieces[:1], last)] == ["Hi"]
    assert state.generated_tokens == 3  # special tokens still count as generated


def test_special_token_text_does_not_complete_a_stop() -> None:
    state = ChoiceState(["</s>"], want_logprobs=False)
    pieces, last = run(state, [tok("a"), tok("</s>", special=True), tok("b")])
    assert all_text(pieces, last) == "ab"
    assert not state.stopped
    assert not state.stopped_by_proxy


def test_no_logprobs_when_not_requested() -> None:
    state = ChoiceState(["X"], want_logprobs=False)
    pieces, last = run(state, [tok("a"), tok("bX")])
    assert [p.logprobs for p in pieces] == [None, None]
    assert last.logprobs is None
    assert all_text(pieces, last) == "ab"


def test_logprobs_released_only_with_their_text() -> None:
    state = ChoiceState(["STOP"], want_logprobs=True)
    first = state.add(tok("go", -0.1))
    assert first == Piece("go", [("go", -0.1, [])])
    held = state.add(tok(" ST", -0.2))  # " " is sent; "ST" may start the stop, so the token waits
    assert held.text == " "
    assert held.logprobs == []
    released = state.add(tok("ORM", -0.3))
    assert released.text == "STORM"
    assert released.logprobs == [(" ST", -0.2, []), ("ORM", -0.3, [])]
    last = state.finish()
    assert last == Piece("", [])


def test_held_token_logprob_released_by_finish() -> None:
    state = ChoiceState(["STOP"], want_logprobs=True)
    piece = state.add(tok("ST", -0.7))
    assert piece == Piece("", [])
    last = state.finish()
    assert last == Piece("ST", [("ST", -0.7, [])])


def test_stop_across_tokens_sets_stopped_by_proxy_and_ignores_later_tokens() -> None:
    state = ChoiceState(["STOP"], want_logprobs=True)
    pieces, last = run(state, [tok("ok"), tok("ST"), tok("OP"), tok("after")])
    assert all_text(pieces, last) == "ok"
    assert state.stopped
    assert state.stopped_by_proxy
    assert pieces[3] == Piece("", None)
    # tokens that are entirely the stop send no logprobs
    assert [entry[0] for entry in all_logprobs(pieces[:3], last)] == ["ok"]
    assert state.generated_tokens == 4


def test_stop_cut_mid_token_releases_the_token_that_was_partly_sent() -> None:
    state = ChoiceState(["\n"], want_logprobs=True)
    pieces, last = run(state, [tok("a"), tok("b\nc"), tok("d")])
    assert all_text(pieces, last) == "ab"
    assert [entry[0] for entry in all_logprobs(pieces[:2], last)] == ["a", "b\nc"]


def test_top_tokens_become_alternatives_and_null_logprob_is_unknown() -> None:
    state = ChoiceState([], want_logprobs=True)
    piece = state.add(tok("a", None), [tok("a", -0.1), tok("b", None)])
    assert piece.logprobs == [("a", UNKNOWN_LOGPROB, [("a", -0.1), ("b", UNKNOWN_LOGPROB)])]


def test_finish_without_stops_returns_nothing_more() -> None:
    state = ChoiceState([], want_logprobs=True)
    pieces, last = run(state, [tok("x"), tok("y")])
    assert [p.text for p in pieces] == ["x", "y"]
    assert last == Piece("", [])
    assert not state.stopped_by_proxy


@pytest.mark.parametrize("seed", range(200))
def test_joined_logprob_tokens_equal_joined_text(seed: int) -> None:
    """With no stop in the text, every token's logprob is sent, with its text, exactly once."""
    rng = random.Random(seed)
    alphabet = "ab日 "
    tokens = [tok("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3))), -float(i)) for i in range(30)]
    text = "".join(t["text"] for t in tokens)
    stops = [s for s in ("".join(rng.choice(alphabet) for _ in range(3)) for _ in range(2)) if s not in text]
    state = ChoiceState(stops, want_logprobs=True)
    sent_text = ""
    sent_tokens = ""
    for token in tokens:
        piece = state.add(token)
        sent_text += piece.text
        assert piece.logprobs is not None
        sent_tokens += "".join(entry[0] for entry in piece.logprobs)
        # a token's logprob never arrives before its text
        assert sent_text.startswith(sent_tokens)
    last = state.finish()
    assert last.logprobs is not None
    sent_text += last.text
    sent_tokens += "".join(entry[0] for entry in last.logprobs)
    assert sent_text == text
    assert sent_tokens == text
    assert not state.stopped_by_proxy
