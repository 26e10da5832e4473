"""The text/event-stream decoder against the WHATWG rules, fed in every possible chunking."""

from __future__ import annotations

import pytest

from service.client.sse import ServerSentEvent, SSEDecoder

STREAM = (
    "\ufeffretry: 2500\r\n"
    ": a comment, ignored\r\n"
    "event: state\r\n"
    "id: 7\r\n"
    "data: {\"a\":\r\n"
    "data:  1}\r\n"
    "\r\n"
    "event: progress\n"
    "data\n"
    "data: x\n"
    "\n"
    "id: 9\r"
    "event: only-id\r"
    "\r"
    "data: no event name\n"
    "\n"
)
EXPECTED = [
    ServerSentEvent(event="state", data='{"a":\n 1}', id="7"),
    ServerSentEvent(event="progress", data="\nx", id="7"),  # the id persists; `data` alone adds an empty line
    ServerSentEvent(event="message", data="no event name", id="9"),
]


def decode(chunks: list[bytes]) -> tuple[list[ServerSentEvent], SSEDecoder]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events, decoder


def test_whole_stream():
    events, decoder = decode([STREAM.encode()])
    assert events == EXPECTED
    assert decoder.retry_ms == 2500
    assert decoder.last_event_id == "9"  # an event without data is not dispatched, its id is kept


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_any_chunking_gives_the_same_events(size):
    raw = STREAM.encode()
    events, _ = decode([raw[i : i + size] for i in range(0, len(raw), size)])
    assert events == EXPECTED


def test_a_split_crlf_is_one_line_ending():
    events, _ = decode([b"data: a\r", b"\n", b"\r", b"\ndata: b\r\n\r\n"])
    assert events == [ServerSentEvent("message", "a", ""), ServerSentEvent("message", "b", "")]


def test_multibyte_characters_split_across_chunks():
    raw = "data: héllo ✓\n\n".encode()
    events, _ = decode([raw[i : i + 1] for i in range(len(raw))])
    assert events == [ServerSentEvent("message", "héllo ✓", "")]


def test_resume_id_moves_only_when_an_event_completes():
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 3\ndata: x\n\nid: 4\ndata: y\n") == [ServerSentEvent("message", "x", "3")]
    assert decoder.last_event_id == "3", "event 4 is incomplete: resuming must replay it"


def test_bad_fields_are_ignored():
    events, decoder = decode([b"retry: 1x\nid: a\x00b\nfoo: bar\ndata:no-space\n\n"])
    assert events == [ServerSentEvent("message", "no-space", "")]
    assert decoder.retry_ms is None
