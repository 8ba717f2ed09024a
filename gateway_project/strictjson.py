"""The one JSON parser for what callers send: MCP bodies, the REST API, OAuth registration.

orjson parses, and refuses what the gateway could not store or relay faithfully:
invalid UTF-8 and lone surrogates (escaped ``"\\ud800"`` or raw), ``NaN``/``Infinity``
and numbers beyond a double. There is deliberately no fallback to the standard
library's ``json``: it accepts lone surrogates (a record holding one cannot be
serialised) and recurses in Python, so a body nested a thousand levels deep raised
``RecursionError`` (a 500) instead of ``ValueError``.

Nesting is limited to ``MAX_DEPTH`` levels, far above any real message but far below
what recursive code downstream (redaction, records, the JSON encoders) can walk.
Checking it costs nothing on a small message: a body with no more than ``MAX_DEPTH``
brackets in total cannot nest deeper, and only bigger ones are walked (iteratively).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson

# Deep enough for any tool argument or schema a person writes; shallow enough that
# every recursive walk of a parsed body stays far from Python's recursion limit.
MAX_DEPTH: Final = 64
_LONG_INTEGER: Final = re.compile(r"\d{19}")  # 2**63 has 19 digits


class JsonRefused(ValueError):
    """The body is not JSON the gateway accepts; the message says why, for the caller.

    ``too_deep`` tells a well-formed but over-nested body (a JSON-RPC invalid request)
    from one that is not JSON at all (a parse error).
    """

    def __init__(self, reason: str, *, too_deep: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.too_deep = too_deep


def loads(data: bytes | bytearray | memoryview | str, *, exact_integers: bool = False) -> Any:
    """Parse untrusted JSON; raises ``JsonRefused`` (a ``ValueError``) with a clear reason.

    orjson reads integers beyond 64 bits as floats. With ``exact_integers`` a body
    that may hold one is parsed again by the standard library, which keeps them exact
    (safe once orjson and the depth check accepted it); the MCP hot path relays as before.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        reason, too_deep = _reason(str(exc))
        raise JsonRefused(reason, too_deep=too_deep) from None
    if type(data) is bytes:  # the transport's case, kept to two C-speed counts
        brackets = data.count(b"[") + data.count(b"{")
    elif isinstance(data, str):
        brackets = data.count("[") + data.count("{")
    else:
        brackets = bytes(data).count(b"[") + bytes(data).count(b"{")
    if brackets > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise JsonRefused(_too_deep(), too_deep=True)
    if exact_integers:
        text = data if isinstance(data, str) else bytes(data).decode()
        if _LONG_INTEGER.search(text):
            return json.loads(text)
    return value


def _too_deep() -> str:
    return f"JSON nested deeper than {MAX_DEPTH} levels"


def _reason(message: str) -> tuple[str, bool]:
    """orjson's message, said for a caller: (reason, too_deep)."""
    if "depth limit" in message or "Recursion" in message:
        return _too_deep(), True
    if "surrogate" in message or "UTF-8" in message:
        return f"invalid Unicode ({message.split(':')[0]})", False
    return message, False


def _deeper_than(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether any container sits more than ``limit`` levels deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False
