"""The PII filter and the secret redaction, on their own (pure Python)."""

from __future__ import annotations

import json

import pytest

from audit.pii import luhn_valid, pii_redact, pii_redact_text
from audit.redaction import REDACTED, Redactor


@pytest.mark.parametrize(
    "text,kind",
    [
        ("write to jane.doe+test@mail.example.co.uk today", "email"),
        ("call (415) 555-0134 now", "phone"),
        ("call +44 20 7946 0958 now", "phone"),
        ("SSN 078-05-1120.", "ssn"),
        ("card 4111-1111-1111-1111 ok", "credit_card"),
        ("card 378282246310005 ok", "credit_card"),  # Amex, 15 digits
        ("from 192.168.0.17:", "ip"),
        ("from 2001:db8::8a2e:370:7334 then", "ip"),
    ],
)
def test_each_kind_is_redacted(text, kind):
    found: set[str] = set()
    redacted = pii_redact_text(text, found)
    assert found == {kind}
    assert f"[REDACTED:{kind}]" in redacted


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 (fails Luhn)",
        "version 1.2.3 and 10:30:00",
        "SSN-like 000-12-3456 is invalid",
        "ids abc123 and 42",
        "999.1.1.1 is not an address",
    ],
)
def test_it_leaves_lookalikes_alone(text):
    found: set[str] = set()
    assert pii_redact_text(text, found) == text
    assert found == set()


def test_luhn():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_it_walks_a_whole_result_but_not_protocol_fields():
    result = {
        "content": [
            {"type": "text", "text": "mail bob@example.com"},
            {"type": "resource", "resource": {"uri": "mail://bob@example.com", "text": "1.2.3.4"}},
        ],
        "structuredContent": {"people": [{"email": "amy@example.org", "age": 40}]},
        "isError": False,
    }
    found: set[str] = set()
    redacted = pii_redact(result, found)
    assert found == {"email", "ip"}
    assert redacted["content"][0]["text"] == "mail [REDACTED:email]"
    assert redacted["content"][1]["resource"]["uri"] == "mail://bob@example.com"
    assert redacted["content"][1]["resource"]["text"] == "[REDACTED:ip]"
    assert redacted["structuredContent"]["people"][0] == {"email": "[REDACTED:email]", "age": 40}
    assert result["content"][0]["text"] == "mail bob@example.com"  # a copy


def test_known_secrets_are_redacted_raw_and_json_escaped():
    redactor = Redactor()
    secret = 'pa"ss\\word-123456'
    redactor.add([secret, "short"])
    text = json.dumps({"echo": f"x {secret} y", "other": "short"})
    redacted, changed = redactor.redact(text)
    assert changed
    assert json.loads(redacted) == {"echo": f"x {REDACTED} y", "other": "short"}


@pytest.mark.parametrize(
    "token",
    [
        "Bearer abcdefghijklmnop.qrstu",
        "gwt_AbCdEfGhIjKlMnOpQrStUv",
        "sk-proj-abcdefghijklmnopqrstuvwx",
        "ghp_" + "a" * 36,
        "xoxb-123456789012-abcdefghij",
        "AKIAIOSFODNN7EXAMPLE",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ],
)
def test_token_shaped_strings_are_redacted_whatever_their_origin(token):
    redacted, changed = Redactor().redact(f"here: {token} there")
    assert changed and token not in redacted and REDACTED in redacted


def test_thousands_of_secrets_are_all_found_in_one_pass():
    import secrets

    redactor = Redactor()
    values = [secrets.token_urlsafe(24) for _ in range(3000)]
    redactor.add(values)
    text = f"a {values[0]} b {values[1500]}{values[2999]} c"
    redacted, changed = redactor.redact(text)
    assert changed and redacted == "a [REDACTED] b [REDACTED][REDACTED] c"
    assert redactor.redact("nothing here at all")[1] is False


def test_a_secret_inside_a_longer_one_is_replaced_by_the_longer_match():
    redactor = Redactor()
    redactor.add(["abcdefgh12", "abcdefgh12345678"])
    assert redactor.redact("x abcdefgh12345678 y abcdefgh12 z")[0] == (
        "x [REDACTED] y [REDACTED] z"
    )


def test_replacing_the_secrets_keeps_the_recent_ones_and_drops_the_rest(monkeypatch):
    redactor = Redactor()
    redactor.add(["old-token-0123456789"])
    redactor.replace(["stored-token-0123456789"])
    # Registered moments ago: kept (the database may not show it yet).
    assert redactor.redact("old-token-0123456789")[1] is True
    monkeypatch.setattr(Redactor, "RECENT_SECONDS", 0.0)
    redactor.replace(["stored-token-0123456789"])
    assert redactor.redact("old-token-0123456789")[1] is False
    assert redactor.redact("stored-token-0123456789")[0] == "[REDACTED]"
