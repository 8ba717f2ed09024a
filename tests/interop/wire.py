"""What the suite and its client drivers share: the job format and how values are compared.

Standard library only: the Python SDK 1.x driver imports it from the peers virtualenv, the
2.x driver and the suite from the project's. A *job* is one client session against one
target (an upstream directly, or the gateway): ``{"id", "target", "ops"}``; a target is
``{"transport": "streamable-http"|"sse"|"stdio", "url", "headers", "command", "env",
"mode"}``; an op is ``{"id", "op": "list_tools"|"call"|"read"|"prompt"|"list_changed", …}``.
A driver answers each job with ``{"id", "connect": {"ok", "error", "protocol"},
"results": {op id: {"ok", "value" | "error", "progress", "seconds"}}}``.

Long strings (a 1 MiB result) travel between driver and suite as a digest, so a driver's
answer stays small: :func:`summarize` applies to everything a driver reports.
"""

from __future__ import annotations

import hashlib
from typing import Any

LONG = 200


def digest(text: str) -> str:
    """A long string as its length and hash: equal strings, equal digests."""
    return f"<{len(text)} chars sha256:{hashlib.sha256(text.encode()).hexdigest()[:16]}>"


def summarize(value: Any) -> Any:
    """``value`` with every string longer than ``LONG`` replaced by its digest."""
    if isinstance(value, str):
        return digest(value) if len(value) > LONG else value
    if isinstance(value, list):
        return [summarize(item) for item in value]
    if isinstance(value, dict):
        return {key: summarize(item) for key, item in value.items()}
    return value


def expand(value: Any) -> Any:
    """Arguments with ``{"$repeat": s, "count": n}`` turned into ``s * n`` (a 1 MiB argument
    is built by the driver, not carried in the job)."""
    if isinstance(value, dict):
        if set(value) == {"$repeat", "count"}:
            return str(value["$repeat"]) * int(value["count"])
        return {key: expand(item) for key, item in value.items()}
    if isinstance(value, list):
        return [expand(item) for item in value]
    return value


def error_text(error: BaseException) -> str:
    """One line naming an exception, the first of a group's when it is a group."""
    inner = getattr(error, "exceptions", None)
    if inner:
        return error_text(inner[0])
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]
