"""The event-stream parser (``connections/eventstream.py``) by the WHATWG rules, fed the
way servers really write: CRLF (sse-starlette), LF (the TypeScript SDK), lone CR,
priming events, comments, chunks cut anywhere."""

from __future__ import annotations

import pytest

from connections.eventstream import EventStreamParser, EventTooLarge


def feed_all(
    chunks: list[bytes], **kwargs
) -> tuple[list[tuple[str, bytes, str | None]], EventStreamParser]:
    parser = EventStreamParser(**kwargs)
    events = []
    for chunk in chunks:
        events += [(e.event, e.data, e.id) for e in parser.feed(chunk)]
    return events, parser


def every_split(stream: bytes) -> list[list[bytes]]:
    return [[stream[:i], stream[i:]] for i in range(len(stream) + 1)]


def test_it_reads_lf_crlf_and_cr_line_ends_alike():
    for end in (b"\n", b"\r\n", b"\r"):
        stream = end.join([b"event: message", b"id: 7", b'data: {"a":1}', b"", b""])
        events, parser = feed_all([stream])
        assert events == [("message", b'{"a":1}', "7")], end
        assert parser.last_event_id == "7"


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
def test_it_gives_the_same_events_wherever_the_chunks_are_cut(end):
    stream = end.join(
        [b":ok", b"id: 1", b"data:", b"", b"retry: 250", b"data: one", b"data: two", b"", b""]
    )
    expected = [("message", b"", "1"), ("message", b"one\ntwo", "1")]
    for chunks in every_split(stream):
        events, parser = feed_all(chunks)
        assert events == expected, chunks
        assert parser.retry_ms == 250
    events, _ = feed_all([bytes([byte]) for byte in stream])
    assert events == expected


def test_a_crlf_split_between_chunks_is_one_line_end_not_an_empty_line():
    events, _ = feed_all([b"data: a\r", b"\ndata: b\r\n\r\n"])
    assert events == [("message", b"a\nb", None)]


def test_a_priming_event_sets_the_id_and_carries_empty_data():
    # What TypeScript servers with an event store send first on every answer stream.
    events, parser = feed_all([b"id: abc_1\ndata: \n\nevent: message\nid: abc_2\ndata: {}\n\n"])
    assert events == [("message", b"", "abc_1"), ("message", b"{}", "abc_2")]
    assert parser.last_event_id == "abc_2"


def test_comments_unknown_fields_and_a_bare_id_dispatch_nothing():
    events, parser = feed_all([b": keep-alive\n\nfoo: bar\n\nid: 9\n\n"])
    assert events == []
    assert parser.last_event_id == "9"


def test_a_leading_bom_is_dropped_even_when_split():
    events, _ = feed_all([b"\xef", b"\xbb", b"\xbfdata: x\n\n"])
    assert events == [("message", b"x", None)]


def test_only_one_space_after_the_colon_is_removed_and_a_nul_id_is_ignored():
    events, parser = feed_all([b"id: 1\n\nid: a\x00b\ndata:  two spaces\n\n"])
    assert events == [("message", b" two spaces", "1")]
    assert parser.last_event_id == "1"


def test_named_events_keep_their_type_and_the_type_resets_after_dispatch():
    events, _ = feed_all([b"event: endpoint\ndata: /messages?s=1\n\ndata: {}\n\n"])
    assert events == [("endpoint", b"/messages?s=1", None), ("message", b"{}", None)]


def test_an_event_of_several_mebibytes_is_read_whole():
    payload = b"x" * (5 * 1024 * 1024)
    stream = b"data: " + payload + b"\n\n"
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    events, _ = feed_all(chunks)
    assert events == [("message", payload, None)]


def test_an_event_over_the_cap_is_refused_even_without_a_line_end():
    with pytest.raises(EventTooLarge):
        feed_all([b"data: " + b"x" * 2000], max_event_bytes=1000)
    with pytest.raises(EventTooLarge):
        feed_all(
            [b"data: " + b"x" * 600 + b"\n", b"data: " + b"x" * 600 + b"\n"], max_event_bytes=1000
        )


def test_reset_drops_a_cut_event_and_keeps_the_last_id():
    parser = EventStreamParser()
    parser.feed(b"id: 5\ndata: {}\n\ndata: half")
    parser.reset()
    assert [(e.data, e.id) for e in parser.feed(b"data: next\n\n")] == [(b"next", "5")]
