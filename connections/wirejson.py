"""JSON on the MCP hot path: orjson, with the standard library as the fallback.

orjson encodes and decodes the small JSON-RPC messages of a ``tools/call`` about
five times faster than ``json``; it refuses integers beyond 64 bits (which JSON
allows), so such messages go through ``json`` instead. Output is compact UTF-8,
like ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises ``ValueError`` when it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
