"""Server-sent events read the way the WHATWG HTML standard says a browser reads them.

MCP servers differ in how they write an event stream: CRLF line ends
(sse-starlette, the Python SDK's servers), LF (the TypeScript SDK), a priming
event that carries only an ``id`` and an empty ``data:`` (TypeScript servers
with an event store), ``retry:`` hints, ``:`` comments used as keep-alives,
data split over several ``data:`` lines. ``EventStreamParser`` accepts all of
them, fed with chunks cut anywhere (a CR at the end of one chunk and its LF at
the start of the next is one line end), and keeps the state a client needs to
resume: the last event id and the retry delay.

No event may hold more than ``max_event_bytes`` (the answer cap): a server that
never ends a line or an event cannot make the gateway buffer without bound.
"""

from __future__ import annotations

from typing import Final

ANSWER_MAX_BYTES: Final = 64 * 1024 * 1024
"""The most one upstream answer (one SSE event or one JSON body) may hold: well above
any tool result a client can use, and still a bound on what one call may buffer."""

_BOM: Final = b"\xef\xbb\xbf"


class EventTooLarge(ValueError):
    """An event (or one line of it) grew past the parser's cap."""


class ServerSentEvent:
    """One dispatched event: its type (``message`` unless named), data and id."""

    __slots__ = ("data", "event", "id")

    def __init__(self, event: str, data: bytes, event_id: str | None) -> None:
        self.event, self.data, self.id = event, data, event_id

    def __repr__(self) -> str:
        return f"ServerSentEvent({self.event!r}, {self.data[:60]!r}, id={self.id!r})"


class EventStreamParser:
    """Incremental ``text/event-stream`` parser: ``feed(chunk)`` returns the events the
    chunk completed. ``last_event_id`` and ``retry_ms`` follow the stream."""

    __slots__ = (
        "_at_start",
        "_data",
        "_data_size",
        "_event",
        "_id",
        "_pending",
        "_skip_lf",
        "last_event_id",
        "max_event_bytes",
        "retry_ms",
    )

    def __init__(self, *, max_event_bytes: int = ANSWER_MAX_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None
        self._pending = bytearray()  # an incomplete line
        self._data: list[bytes] = []
        self._data_size = 0
        self._event = ""
        self._id: str | None = None  # the "last event ID buffer"
        self._skip_lf = False  # the previous chunk ended with CR
        self._at_start = True  # a BOM is dropped only before the first byte

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if self._at_start:
            if len(self._pending) + len(chunk) < len(_BOM) and _BOM.startswith(
                bytes(self._pending) + chunk
            ):
                self._pending += chunk  # could still be the start of a BOM
                return []
            chunk = bytes(self._pending) + chunk
            self._pending.clear()
            self._at_start = False
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if self._skip_lf:
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
            self._skip_lf = False
        if b"\r" in chunk:
            # CRLF and lone CR both end a line; a CR last in the chunk may be the first
            # half of a CRLF whose LF comes with the next chunk.
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n")
        if end < 0:
            self._pending += chunk
            self._check_size()
            return []
        if self._pending:
            self._pending += chunk[: end + 1]
            lines = bytes(self._pending).split(b"\n")
            self._pending.clear()
        elif end == len(chunk) - 1:
            lines = chunk.split(b"\n")  # the usual chunk: whole lines, no copy
        else:
            lines = chunk[: end + 1].split(b"\n")
        if end < len(chunk) - 1:
            self._pending += chunk[end + 1 :]
        lines.pop()  # after the last line end: empty
        events: list[ServerSentEvent] = []
        for line in lines:
            if not line:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
            elif line[:5] == b"data:":  # the common field, without a method call
                value = line[6:] if line[5:6] == b" " else line[5:]
                self._data.append(value)
                self._data_size += len(value) + 1
            elif line[0] != 0x3A:  # ":" starts a comment
                self._field(line)
        if self._data_size + len(self._pending) > self.max_event_bytes:
            self._check_size()
        return events

    def reset(self) -> None:
        """A new connection continues the stream (a resume): an event the old one cut
        short is dropped, the last event id and retry delay are kept."""
        self._pending.clear()
        self._data = []
        self._data_size = 0
        self._event = ""
        self._id = self.last_event_id
        self._skip_lf = False
        self._at_start = True

    def _field(self, line: bytes) -> None:
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
            self._data_size += len(value) + 1
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self.retry_ms = int(value)
        # Any other field is ignored, as the standard says.

    def _dispatch(self) -> ServerSentEvent | None:
        self.last_event_id = self._id
        if not self._data:
            # No data line at all (a bare id or retry): nothing to dispatch, but the id
            # counts for resuming. A priming event's empty ``data:`` does dispatch, with
            # empty data, which readers of JSON-RPC skip.
            self._event = ""
            return None
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        event = ServerSentEvent(self._event or "message", data, self._id)
        self._data = []
        self._data_size = 0
        self._event = ""
        return event

    def _check_size(self) -> None:
        if len(self._pending) + self._data_size > self.max_event_bytes:
            raise EventTooLarge(
                f"an event of the upstream's stream is over {self.max_event_bytes} bytes"
            )
