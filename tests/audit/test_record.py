"""Building one record from an answered call (no server): sizes, truncation, redaction."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

from audit.recorder import call_record, session_digest
from audit.redaction import redactor
from endpoints.mcp.engine import Route, ServedView


def _ctx(**extra):
    principal = SimpleNamespace(
        user_id=7,
        username="dora",
        organization_id=uuid.uuid4(),
        token_id="tok-1",
        token_kind="oauth",
        client_name="Claude",
    )
    return SimpleNamespace(
        view=ServedView(
            endpoint_id=str(uuid.uuid4()), name="Support", version="1", instructions=""
        ),
        protocol_version="2025-11-25",
        principal=principal,
        session_id="signed-session-id",
        client_info={"name": "claude-ai", "version": "0.1"},
        route=Route(str(uuid.uuid4()), "search", "Docs"),
        upstream_seconds=0.0123,
        **extra,
    )


def _record(response, arguments=None, **settings_kw):
    message = {"method": "tools/call", "params": {"name": "docs__search", "arguments": arguments}}
    return call_record(
        ctx=_ctx(),
        message=message,
        response=response,
        http_status=200,
        started_at=1_700_000_000.0,
        total_seconds=0.02,
        request_bytes=99,
    )


def test_an_oauth_principal_is_recorded_generically():
    record = _record({"result": {"content": [{"type": "text", "text": "ok"}]}}, {"q": "x"})
    assert record["token_kind"] == "oauth" and record["client_name"] == "Claude"
    assert record["client_software"] == "claude-ai 0.1"
    assert record["session_id"] == session_digest("signed-session-id") != "signed-session-id"
    assert record["upstream_ms"] == 12.3 and record["total_ms"] == 20.0
    assert record["upstream_name"] == "search" and record["connection_name"] == "Docs"


def test_large_payloads_are_cut_and_marked_truncated(settings):
    settings.GATEWAY_AUDIT_MAX_PAYLOAD = 1000
    text = "x" * 5000
    record = _record({"result": {"content": [{"type": "text", "text": text}]}}, {"blob": text})
    assert record["result_truncated"] and len(record["result"]) == 1000
    assert record["arguments_truncated"] and len(record["arguments"]) == 1000
    assert record["response_bytes"] > 5000  # the size of what was sent, not of what was kept


def test_a_secret_at_the_cut_is_redacted_not_half_kept(settings):
    settings.GATEWAY_AUDIT_MAX_PAYLOAD = 1000
    secret = "cut-secret-" + uuid.uuid4().hex
    redactor.add([secret])
    # The secret straddles character 1,000 of the stored JSON.
    text = "y" * 950 + secret + "z" * 100
    record = _record({"result": {"content": [{"type": "text", "text": text}]}})
    assert record["result_truncated"]
    assert "cut-sec" not in record["result"] and "[REDACTED]" in record["result"]
    assert record["secrets_redacted"] is True


def test_a_tool_error_keeps_its_message_and_a_gateway_refusal_its_reason():
    failed = _record({"result": {"content": [{"type": "text", "text": "boom"}], "isError": True}})
    assert failed["status"] == "tool_error" and failed["error_message"] == "boom"
    ctx = _ctx()
    ctx.route = None
    refused = call_record(
        ctx=ctx,
        message={"method": "tools/call", "params": {"name": "docs__off"}},
        response={"error": {"code": -32602, "message": "Unknown tool: docs__off"}},
        http_status=200,
        started_at=1_700_000_000.0,
        total_seconds=0.001,
        request_bytes=10,
    )
    assert refused["status"] == "refused" and refused["refusal"] == "not_enabled"
    assert refused["rpc_code"] == -32602 and "connection_id" not in refused
    assert json.loads(json.dumps(refused))  # a spool line
