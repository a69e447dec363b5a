"""StopTrimmer and cut_at_stop: stop strings enforced on streamed text, whatever the token boundaries."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from server.generation.stops import StopTrimmer, cut_at_stop


def run(stops: Sequence[str], pieces: Sequence[str]) -> tuple[list[str], str, StopTrimmer]:
    """Feed `pieces` in order; the outputs of each feed and of the final flush."""
    trimmer = StopTrimmer(stops)
    outputs = [trimmer.feed(piece) for piece in pieces]
    return outputs, trimmer.flush(), trimmer


def expected(text: str, stops: Sequence[str]) -> str:
    """The reference answer, computed independently of the module: text up to the earliest stop."""
    earliest = len(text)
    for i in range(len(text)):
        if any(stop and text.startswith(stop, i) for stop in stops):
            earliest = i
            break
    return text[:earliest]


# --- cut_at_stop -------------------------------------------------------------------------------------


def test_cut_at_stop_none_when_absent() -> None:
    assert cut_at_stop("hello world", ["xyz", "worlds"]) is None


def test_cut_at_stop_earliest_of_several() -> None:
    assert cut_at_stop("abc END def STOP", ["STOP", "END"]) == 4


def test_cut_at_stop_ignores_empty_stop() -> None:
    assert cut_at_stop("abc", ["", "c"]) == 2
    assert cut_at_stop("abc", [""]) is None


def test_cut_at_stop_non_ascii_offsets_are_characters() -> None:
    assert cut_at_stop("日本語です。終わり", ["。"]) == 5


# --- StopTrimmer -------------------------------------------------------------------------------------


def test_stop_split_across_tokens() -> None:
    outputs, rest, trimmer = run(["STOP"], ["Hello ", "ST", "OP", " more"])
    assert outputs == ["Hello ", "", "", ""]
    assert rest == ""
    assert trimmer.stopped
    assert trimmer.emitted == len("Hello ")


def test_stop_split_mid_token_releases_text_before_it() -> None:
    outputs, rest, trimmer = run(["STOP"], ["abcS", "TOPxyz"])
    assert outputs == ["abc", ""]
    assert rest == ""
    assert trimmer.stopped


def test_stop_inside_one_token_cuts_it() -> None:
    outputs, _, trimmer = run(["\n\n"], ["one\n\ntwo"])
    assert outputs == ["one"]
    assert trimmer.emitted == 3


def test_overlapping_prefixes() -> None:
    # "aa" is held as a prefix of "aab"; the next "a" shifts the candidate by one and releases one "a".
    outputs, rest, trimmer = run(["aab"], ["a", "a", "a", "b", "tail"])
    assert "".join(outputs) + rest == "a"
    assert outputs == ["", "", "a", "", ""]
    assert trimmer.stopped


def test_overlapping_prefix_whole_string_at_once() -> None:
    outputs, rest, _ = run(["aab"], ["aaab"])
    assert outputs == ["a"]
    assert rest == ""


def test_several_stops_earliest_wins() -> None:
    outputs, rest, _ = run(["world", "lo w"], ["hel", "lo wor", "ld"])
    assert "".join(outputs) + rest == "hel"


def test_several_stops_earliest_wins_even_if_longer_and_later_in_list() -> None:
    outputs, rest, _ = run(["B", "xxA"], ["xx", "AB"])
    assert "".join(outputs) + rest == ""


def test_prefix_that_diverges_is_released_in_full() -> None:
    trimmer = StopTrimmer(["STOP"])
    assert trimmer.feed("go ST") == "go "
    assert trimmer.feed("O") == ""
    assert trimmer.feed("RM") == "STORM"
    assert not trimmer.stopped
    assert trimmer.flush() == ""
    assert trimmer.emitted == len("go STORM")


def test_unrelated_text_is_never_held() -> None:
    trimmer = StopTrimmer(["###"])
    for piece in ["a", "b c", " d!"]:
        assert trimmer.feed(piece) == piece


def test_only_the_shortest_needed_tail_is_held() -> None:
    trimmer = StopTrimmer(["<|end|>"])
    assert trimmer.feed("x <|e") == "x "
    assert trimmer.feed("n") == ""
    assert trimmer.feed("X") == "<|enX"


def test_non_ascii_text_and_stops() -> None:
    outputs, rest, trimmer = run(["本語"], ["日", "本", "語です"])
    assert outputs == ["日", "", ""]
    assert rest == ""
    assert trimmer.emitted == 1


def test_emoji_stop_split_across_tokens() -> None:
    outputs, rest, trimmer = run(["🎉🎉"], ["party 🎉", "🎉 time"])
    assert "".join(outputs) + rest == "party "
    assert trimmer.stopped
    assert trimmer.emitted == len("party ")


def test_non_ascii_prefix_then_diverges() -> None:
    outputs, rest, _ = run(["日本語"], ["これは日本", "の本"])
    assert outputs == ["これは", "日本の本"]
    assert rest == ""


def test_no_stops_is_pass_through_with_zero_hold() -> None:
    trimmer = StopTrimmer([])
    for piece in ["S", "T", "OP", "", "日本"]:
        assert trimmer.feed(piece) == piece
    assert trimmer.flush() == ""
    assert trimmer.emitted == len("STOP日本")
    assert not trimmer.stopped


def test_empty_stop_strings_are_ignored() -> None:
    trimmer = StopTrimmer(["", ""])
    assert trimmer.feed("abc") == "abc"
    assert not trimmer.stopped


def test_nothing_emitted_after_stop() -> None:
    trimmer = StopTrimmer(["END"])
    assert trimmer.feed("aEND") == "a"
    assert trimmer.feed("more text") == ""
    assert trimmer.feed("END") == ""
    assert trimmer.flush() == ""
    assert trimmer.emitted == 1


def test_flush_returns_held_tail() -> None:
    trimmer = StopTrimmer(["STOP"])
    assert trimmer.feed("value: STO") == "value: "
    assert trimmer.flush() == "STO"
    assert trimmer.emitted == len("value: STO")
    assert trimmer.flush() == ""


def test_stop_equal_to_whole_first_token() -> None:
    outputs, rest, trimmer = run(["</s>"], ["</s>", "x"])
    assert outputs == ["", ""]
    assert rest == ""
    assert trimmer.stopped
    assert trimmer.emitted == 0


@pytest.mark.parametrize("seed", range(300))
def test_random_splits_match_reference(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "abc日"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
    stops = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(0, 3))]
    pieces: list[str] = []
    at = 0
    while at < len(text):
        size = rng.randint(0, 5)  # zero-length tokens happen (special tokens, byte fallbacks)
        pieces.append(text[at : at + size])
        at += size
    outputs, rest, trimmer = run(stops, pieces)
    want = expected(text, stops)
    assert "".join(outputs) + rest == want, (text, stops, pieces)
    assert trimmer.emitted == len(want)
    assert trimmer.stopped == (want != text)
    # Until a stop is complete, the held text is shorter than the longest stop.
    longest = max((len(stop) for stop in stops), default=1)
    fed = sent = 0
    for piece, out in zip(pieces, outputs, strict=True):
        fed += len(piece)
        sent += len(out)
        if expected(text[:fed], stops) == text[:fed]:
            assert fed - sent <= longest - 1, (text, stops, pieces)
