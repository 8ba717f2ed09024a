"""The per-endpoint PII filter: redacts personal data in results before the client sees them.

Pure Python. Kinds: ``email``, ``phone``, ``ssn`` (US social security numbers),
``credit_card`` (13 to 19 digits that pass the Luhn check) and ``ip`` (IPv4 and
IPv6). Each match becomes ``[REDACTED:<kind>]``; the kinds found are returned so
the activity record can show them. Strings are walked in the whole result
(text content, structured content, resource text, prompt messages) except
protocol fields (``type``, ``mimeType``, ``uri``, ``blob``, ``_meta``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

KINDS = ("email", "credit_card", "ssn", "ip", "phone")
_SKIP_KEYS = frozenset({"type", "mimeType", "uri", "blob", "_meta", "annotations", "name"})

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_IPV4 = re.compile(
    r"(?<![\d.])(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}(?![\d.])"
)
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")
# International (+CC then groups) or North American (415) 555-0134 / 415-555-0134.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}"
    r"|\(\d{3}\)\s?\d{3}[\s.-]\d{4}|\d{3}[\s.-]\d{3}[\s.-]\d{4})(?!\w)"
)
# A cheap pre-check: no digit, no "@" and no ":" means nothing to find.
_MAYBE = re.compile(r"[\d@:]")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str | None:
    digits = re.sub(r"[ -]", "", match.group(0))
    return "credit_card" if 13 <= len(digits) <= 19 and luhn_valid(digits) else None


def _ipv6(match: re.Match[str]) -> str | None:
    text = match.group(0)
    if text.count(":") < 2:
        return None
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return None
    return "ip"


def _phone(match: re.Match[str]) -> str | None:
    digits = sum(char.isdigit() for char in match.group(0))
    return "phone" if 7 <= digits <= 15 else None


def _has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


_DIGIT = re.compile(r"\d")

# (pattern, classify, cheap pre-check): a rule runs only when its pre-check passes.
_RULES: list[
    tuple[re.Pattern[str], Callable[[re.Match[str]], str | None], Callable[[str], bool]]
] = [
    (_EMAIL, lambda m: "email", lambda t: "@" in t),
    (_CARD, _card, _has_digit),
    (_SSN, lambda m: "ssn", lambda t: "-" in t),
    (_IPV4, lambda m: "ip", lambda t: "." in t),
    (_IPV6, _ipv6, lambda t: t.count(":") >= 2),
    (_PHONE, _phone, _has_digit),
]


def pii_redact_text(text: str, found: set[str]) -> str:
    """``text`` with personal data replaced; adds the kinds replaced to ``found``."""
    if not _MAYBE.search(text):
        return text
    has_digit = _has_digit(text)
    for pattern, classify, worth in _RULES:
        if (worth is _has_digit and not has_digit) or not worth(text):
            continue

        def replace(match: re.Match[str], classify: Any = classify) -> str:
            kind = classify(match)
            if kind is None:
                return match.group(0)
            found.add(kind)
            return f"[REDACTED:{kind}]"

        text = pattern.sub(replace, text)
    return text


def pii_redact(value: Any, found: set[str]) -> Any:
    """A copy of a JSON value with personal data replaced in its strings."""
    if isinstance(value, str):
        return pii_redact_text(value, found)
    if isinstance(value, list):
        return [pii_redact(item, found) for item in value]
    if isinstance(value, dict):
        return {
            key: item if key in _SKIP_KEYS else pii_redact(item, found)
            for key, item in value.items()
        }
    return value
