"""Incremental SSE framing."""

from __future__ import annotations

from relaykit.dialects.sse import SSEParser


def test_events_split_across_arbitrary_chunk_boundaries() -> None:
    stream = b'event: a\ndata: {"x":1}\n\ndata: two\ndata: lines\n\n: comment\n\ndata: [DONE]\n\n'
    for size in (1, 2, 3, 7, len(stream)):
        parser = SSEParser()
        events = []
        for i in range(0, len(stream), size):
            events.extend(parser.feed(stream[i:i + size]))
        named = [(e.event, e.data) for e in events if e.data]
        assert named == [("a", '{"x":1}'), (None, "two\nlines"), (None, "[DONE]")]


def test_crlf_and_cr_line_endings() -> None:
    parser = SSEParser()
    events = parser.feed(b"data: a\r\n\r\ndata: b\r\r") + parser.feed(b"data: c\r")
    events += parser.feed(b"\n\r\n")
    assert [e.data for e in events] == ["a", "b", "c"]


def test_raw_bytes_are_kept_for_passthrough() -> None:
    parser = SSEParser()
    (ev,) = parser.feed(b'data: {"a": 1}\n\n')
    assert ev.raw == b'data: {"a": 1}\n\n'


def test_truncated_last_event_is_returned_by_flush() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: partial") == []
    assert [e.data for e in parser.flush()] == ["partial"]
