"""Untrusted text made storable: NUL and lone surrogates become U+FFFD, and it is said."""

from __future__ import annotations

import json

import pytest

from gateway_project.text import (
    fields_storable,
    json_storable,
    text_is_storable,
    text_storable,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x\x00y", "x\ufffdy"),
        ("\ud800", "\ufffd"),
        ("a\udfffb\x00", "a\ufffdb\ufffd"),
        ("\ud83d\ude00", "\ufffd\ufffd"),  # a pair left as two code points is not text
    ],
)
def test_it_replaces_nul_and_lone_surrogates(text, expected):
    assert not text_is_storable(text)
    assert text_storable(text) == (expected, True)
    expected.encode()  # now encodable as UTF-8


@pytest.mark.parametrize("text", ["", "plain", "caf\u00e9 \U0001f600 \u4e2d", "\ufffd"])
def test_it_leaves_storable_text_alone(text):
    assert text_is_storable(text)
    assert text_storable(text) == (text, False)


def test_it_walks_json_values_and_keys_and_returns_untouched_values_as_they_are():
    value = {"ok": [1, "two", {"three": 3.0}], "n\x00ame": ["\ud800", None, True]}
    storable, replaced = json_storable(value)

    assert replaced is True
    assert storable == {"ok": [1, "two", {"three": 3.0}], "n\ufffdame": ["\ufffd", None, True]}
    json.dumps(storable, ensure_ascii=False).encode()
    clean = {"a": [1, {"b": "c"}]}
    assert json_storable(clean)[0] is clean and json_storable(clean)[1] is False


def test_fields_storable_fixes_a_row_in_place_and_says_so():
    row = {"name": "x\x00y", "count": 3, "details": {"k": "\ud800"}, "other": "fine"}
    assert fields_storable(row) is True
    assert row == {"name": "x\ufffdy", "count": 3, "details": {"k": "\ufffd"}, "other": "fine"}
    assert fields_storable(row) is False
