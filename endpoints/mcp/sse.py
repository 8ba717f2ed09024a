"""Server-sent events framing."""

from __future__ import annotations

import json
import re
from typing import Any

# The event-stream format ends a line at CR, LF or CRLF: text carrying any of them
# is sent as several ``data:`` lines, which the client joins with LF.
_LINE_END_BYTES = re.compile(rb"\r\n|\r|\n")


def sse_event(data: Any, *, event: str | None = None, event_id: str | None = None) -> bytes:
    """One SSE event.

    ``data`` as bytes is an already-encoded payload (compact JSON from the caller's
    encoder, framed without decoding it again); a string is sent as it is; anything
    else as compact JSON. JSON is UTF-8, never ASCII-escaped: clients cap the size of
    one event in bytes (the Python SDK at 1 MiB), and escaping would multiply the
    size of non-Latin text up to six times.
    """
    head = b""
    if event_id is not None:
        head += f"id: {event_id}\n".encode()
    if event is not None:
        head += f"event: {event}\n".encode()
    if isinstance(data, bytes):
        payload = data
    else:
        text = (
            data
            if isinstance(data, str)
            else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        )
        payload = text.encode()
    if b"\n" in payload or b"\r" in payload:
        body = b"\n".join(b"data: " + line for line in _LINE_END_BYTES.split(payload))
    else:
        body = b"data: " + payload
    return head + body + b"\n\n"


SSE_KEEPALIVE = b": keep-alive\n\n"
