"""SSEDecoder: framing variants TGI has used, chunk boundaries anywhere, and what is ignored."""

from __future__ import annotations

import orjson
import pytest

from fakes.tgi import load_fixture
from server.upstream.sse import SSEDecoder

FLAN_T5 = "hfjs_tape_generate_stream_flan_t5_legacy_nospace.sse"
LLAMA = "hfjs_tape_generate_stream_llama32_3b_tgi3.sse"


def fixture_bytes(name: str) -> bytes:
    return load_fixture(name)


def feed_all(chunks: list[bytes]) -> tuple[list[bytes], SSEDecoder]:
    decoder = SSEDecoder()
    events: list[bytes] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events, decoder


def decode(body: bytes) -> list[bytes]:
    return feed_all([body])[0]


def test_data_with_space() -> None:
    assert decode(b"data: hello\n\n") == [b"hello"]


def test_data_without_space() -> None:
    assert decode(b"data:hello\n\n") == [b"hello"]


def test_only_one_leading_space_is_removed() -> None:
    assert decode(b"data:  two spaces\n\n") == [b" two spaces"]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_line_endings(eol: bytes) -> None:
    body = b"data: one" + eol + eol + b"data: two" + eol + eol
    events, decoder = feed_all([body])
    assert events == [b"one", b"two"]
    assert not decoder.has_partial_event()


def test_trailing_cr_dispatches_without_waiting_for_more_bytes() -> None:
    # A stream with bare-CR line ends must not lose its last event when the connection closes after it.
    decoder = SSEDecoder()
    assert decoder.feed(b"data: last\r\r") == [b"last"]
    assert not decoder.has_partial_event()


def test_crlf_split_across_chunks() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # The LF completes the CRLF of the data line; it must not count as a second (blank) line.
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"data: b\r") == []
    assert decoder.feed(b"\n\r") == [b"a\nb"]
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"data: c\r\n\r\n") == [b"c"]
    assert not decoder.has_partial_event()


def test_crlf_blank_line_split_across_chunks() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r\n\r") == [b"x"]
    assert decoder.feed(b"\ndata: y\r\n\r\n") == [b"y"]


def test_lone_cr_then_other_bytes_is_a_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\rdata: b\r\r\n") == [b"a", b"b"]


def test_keep_alive_comments_produce_no_event() -> None:
    assert decode(b":\n\n: ping\n\ndata: x\n\n:\n\n") == [b"x"]


def test_comment_between_data_lines_does_not_split_the_event() -> None:
    assert decode(b"data: a\n: keep-alive\ndata: b\n\n") == [b"a\nb"]


def test_event_id_and_retry_fields_are_ignored() -> None:
    body = b"event: message\nid: 7\nretry: 100\ndata: payload\n\nevent: ping\n\n"
    assert decode(body) == [b"payload"]


def test_multi_line_data_joined_with_newline() -> None:
    assert decode(b"data: first\ndata:second\ndata: third\n\n") == [b"first\nsecond\nthird"]


def test_empty_data_line_is_an_empty_event() -> None:
    assert decode(b"data:\n\n") == [b""]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert decode(b"\n\n\n\r\n") == []


def test_event_is_dispatched_only_on_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\n") == []
    assert decoder.feed(b"\n") == [b"x"]


def test_payload_bytes_are_not_decoded() -> None:
    text = "日本語 🎉".encode()
    assert decode(b"data: " + text + b"\n\n") == [text]


@pytest.mark.parametrize(
    "body",
    [b'data: {"a":1}', b'data: {"a":1}\n', b"data: x\r\n", b"data: x\n\ndata: y", b"da"],
    ids=["no-eol", "no-blank-line", "crlf-no-blank", "second-unfinished", "half-field"],
)
def test_has_partial_event_after_truncation(body: bytes) -> None:
    _, decoder = feed_all([body])
    assert decoder.has_partial_event()


def test_no_partial_event_after_complete_events() -> None:
    decoder = SSEDecoder()
    assert not decoder.has_partial_event()
    decoder.feed(b"data: x\n\n: ping\n\n")
    assert not decoder.has_partial_event()


@pytest.mark.parametrize("name", [FLAN_T5, LLAMA])
def test_fixture_events_parse(name: str) -> None:
    events = decode(fixture_bytes(name))
    assert len(events) >= 5
    parsed = [orjson.loads(event) for event in events]
    assert all("token" in event for event in parsed)
    assert parsed[-1]["generated_text"] is not None
    assert all(event["generated_text"] is None for event in parsed[:-1])


def test_flan_t5_fixture_tokens() -> None:
    events = [orjson.loads(e) for e in decode(fixture_bytes(FLAN_T5))]
    assert [e["token"]["text"] for e in events] == ["one", " two", " three", " four", "</s>"]
    assert events[-1]["generated_text"] == "one two three four"


@pytest.mark.parametrize("name", [FLAN_T5, LLAMA])
def test_byte_by_byte_equals_whole(name: str) -> None:
    body = fixture_bytes(name)
    whole = decode(body)
    events, decoder = feed_all([body[i : i + 1] for i in range(len(body))])
    assert events == whole
    assert not decoder.has_partial_event()


@pytest.mark.parametrize("name", [FLAN_T5, LLAMA])
def test_split_at_every_boundary_equals_whole(name: str) -> None:
    body = fixture_bytes(name)
    whole = decode(body)
    for cut in range(len(body) + 1):
        events, _ = feed_all([body[:cut], body[cut:]])
        assert events == whole, f"split at byte {cut}"


@pytest.mark.parametrize("eol", [b"\r\n", b"\r"], ids=["CRLF", "CR"])
def test_fixture_with_other_line_endings(eol: bytes) -> None:
    body = fixture_bytes(LLAMA)
    converted = body.replace(b"\n", eol)
    whole = decode(body)
    events, decoder = feed_all([converted[i : i + 1] for i in range(len(converted))])
    assert events == whole
    assert not decoder.has_partial_event()
    for cut in range(len(converted) + 1):
        assert feed_all([converted[:cut], converted[cut:]])[0] == whole, f"split at byte {cut}"
