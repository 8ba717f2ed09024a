"""Server-sent events framing."""

from __future__ import annotations

import json
from typing import Any


def sse_event(data: Any, *, event: str | None = None, event_id: str | None = None) -> bytes:
    """One SSE event; ``data`` that is not a string is sent as compact JSON."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in text.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


SSE_KEEPALIVE = b": keep-alive\n\n"
