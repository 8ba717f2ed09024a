"""Text from outside made storable, in one place, before it reaches the database.

PostgreSQL refuses two things Python strings can hold: the NUL character
(U+0000; ``text`` and ``jsonb`` both reject it) and lone surrogates
(U+D800 to U+DFFF, which have no UTF-8 form: the driver cannot even encode them).
A caller controls plenty of text that is written: tool names, client names,
arguments, results, error messages. One such character must never make a write
fail (or, in the activity log, make a whole batch fail), so every write of
untrusted text goes through here: each of these characters becomes U+FFFD (the
replacement character), and the caller learns that something was replaced so
the row can say so.

Pure Python, no Django: any layer may import it. The checks are written for the
common case (nothing to replace) to cost a few C-level scans.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
# NUL and every surrogate code point; in a Python ``str`` a surrogate is always
# "lone" as far as UTF-8 is concerned (a valid pair was decoded to one character).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_is_storable(text: str) -> bool:
    """Whether ``text`` can be written as it is (no NUL, no lone surrogate)."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    return _UNSTORABLE.search(text) is None


def text_storable(text: str) -> tuple[str, bool]:
    """``text`` with NUL and lone surrogates replaced by U+FFFD, and whether any was."""
    if text_is_storable(text):
        return text, False
    return _UNSTORABLE.sub(REPLACEMENT, text), True


def json_storable(value: Any) -> tuple[Any, bool]:
    """A copy of a JSON value whose strings (dict keys included) are all storable, and
    whether anything was replaced. Values without anything to replace are returned as
    they are (not copied)."""
    if isinstance(value, str):
        return text_storable(value)
    if isinstance(value, dict):
        changed = False
        items: list[tuple[Any, Any]] = []
        for key, item in value.items():
            new_key, key_changed = text_storable(key) if isinstance(key, str) else (key, False)
            new_item, item_changed = json_storable(item)
            changed = changed or key_changed or item_changed
            items.append((new_key, new_item))
        # Two keys that differ only by a replaced character collapse into one: the
        # later wins, as it would in a JSON parser.
        return (dict(items), True) if changed else (value, False)
    if isinstance(value, list | tuple):
        changed = False
        new_items = []
        for item in value:
            new_item, item_changed = json_storable(item)
            changed = changed or item_changed
            new_items.append(new_item)
        return (new_items, True) if changed else (value, False)
    return value, False


def fields_storable(values: dict[str, Any]) -> bool:
    """Make every ``str`` value of a flat dict (a row to write) storable, in place;
    return whether anything was replaced. JSON values (dicts, lists) are made storable
    recursively."""
    changed = False
    for key, value in values.items():
        if isinstance(value, str):
            if not text_is_storable(value):
                values[key] = _UNSTORABLE.sub(REPLACEMENT, value)
                changed = True
        elif isinstance(value, dict | list):
            new, replaced = json_storable(value)
            if replaced:
                values[key] = new
                changed = True
    return changed
