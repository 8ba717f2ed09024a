"""Credentials the gateway issued never reach the log, and upstream failures are precise."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pytest

from audit.recorder import call_record
from audit.redaction import REDACTED, redactor
from gateway_project.token_shapes import oauth_access_token_generate, oauth_refresh_token_generate
from oauth.services import api_token_create
from tests.audit.factories_audit import make_records
from tests.audit.test_storable_text import _ctx
from tests.oauth.test_authorization_server import authorized, endpoint  # noqa: F401  (fixtures)


def _record(ctx, arguments, response):
    return call_record(
        ctx=ctx,
        message={
            "method": "tools/call",
            "params": {"name": "docs__search", "arguments": arguments},
        },
        response=response,
        http_status=200,
        started_at=1_700_000_000.0,
        total_seconds=0.02,
        request_bytes=99,
    )


@pytest.mark.django_db
def test_oauth_tokens_are_issued_in_a_shape_the_log_recognises(authorized):  # noqa: F811
    _client, _client_id, tokens = authorized

    assert tokens["access_token"].startswith("gwto_")
    assert tokens["refresh_token"].startswith("gwtr_")
    record = _record(
        _ctx(uuid.uuid4()),
        {"note": f"my token is {tokens['access_token']}", "r": tokens["refresh_token"]},
        {"jsonrpc": "2.0", "id": 1, "result": {"echo": f"x_{tokens['access_token']}"}},
    )

    assert tokens["access_token"] not in record["arguments"] + record["result"]
    assert tokens["refresh_token"] not in record["arguments"]
    assert json.loads(record["arguments"]) == {"note": f"my token is {REDACTED}", "r": REDACTED}
    assert json.loads(record["result"]) == {"echo": f"x_{REDACTED}"}
    assert record["secrets_redacted"] is True


@pytest.mark.django_db
def test_an_api_token_typed_into_arguments_is_redacted(admin):
    _token, raw = api_token_create(user=admin.user, organization=admin.organization, name="ci")

    text, changed = redactor.redact(json.dumps({"token": raw}))

    assert changed and raw not in text


@pytest.mark.parametrize("make", [oauth_access_token_generate, oauth_refresh_token_generate])
def test_every_generated_oauth_token_is_token_shaped(make):
    for _ in range(50):
        token = make(None)
        assert redactor.redact(f"<{token}>") == (f"<{REDACTED}>", True)


def test_the_precise_upstream_failure_is_kept_for_admins():
    error = SimpleNamespace(detail="TLS handshake with 10.0.0.5:443 failed: certificate expired")
    ctx = _ctx(uuid.uuid4(), upstream_error=error)
    response = {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"content": [{"type": "text", "text": "unreachable"}], "isError": True},
    }

    record = _record(ctx, {"q": 1}, response)

    assert record["error_detail"] == error.detail
    assert "error_detail" not in _record(_ctx(uuid.uuid4()), {"q": 1}, response)
    # An error without ``detail`` (before the upstream client gives one) is fine too.
    plain = _record(_ctx(uuid.uuid4(), upstream_error=ValueError("x")), {"q": 1}, response)
    assert "error_detail" not in plain


def test_the_error_detail_is_shown_to_admins_and_auditors_not_members(admin, member, client):
    (record,) = make_records(
        admin.organization, 1, user_id=member.user.pk, error_detail="connect ECONNREFUSED"
    )
    url = f"/api/audit-logs/{record.pk}"

    assert admin.api().get(url).json()["errorDetail"] == "connect ECONNREFUSED"
    assert member.api().get(url).json()["errorDetail"] == ""
    client.force_login(admin.user)
    assert b"connect ECONNREFUSED" in client.get(f"/activity/{record.pk}").content
    client.force_login(member.user)
    assert b"connect ECONNREFUSED" not in client.get(f"/activity/{record.pk}").content
