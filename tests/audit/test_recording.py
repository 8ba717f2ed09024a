"""Live: a real daphne gateway, a real upstream; what the activity log holds afterwards."""

from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from audit.models import AuditRecord
from oauth.models import ApiToken
from oauth.services import api_token_revoke
from tests.audit.conftest import call_tool, rpc, wait_for_records


def test_a_successful_call_is_recorded_with_its_attribution(live_gateway, audited_endpoint, admin):
    audited = audited_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url("audited")

    answer = call_tool(url, admin.token, "paged__tool_01", {"ticket": 42})

    assert answer.status_code == 200
    assert answer.json()["result"]["content"][0]["text"] == "tool_01 ok"
    (record,) = wait_for_records(1)
    token = ApiToken.objects.get(user=admin.user)
    assert record.status == "success"
    assert record.method == "tools/call"
    assert record.name == "paged__tool_01"
    assert record.upstream_name == "tool_01"
    assert str(record.organization_id) == str(admin.organization.pk)
    assert str(record.endpoint_id) == str(audited.endpoint.pk)
    assert record.endpoint_name == "Audited tools"
    assert str(record.connection_id) == str(audited.connection.pk)
    assert record.connection_name == "Paged"
    assert record.user_id == admin.user.pk and record.username == "alice"
    assert record.token_kind == "api_token" and record.token_id == str(token.pk)
    assert record.client_name == "tests"
    assert record.client_software == "audit-tests 1.0"
    assert record.protocol_version == "2026-07-28"
    assert json.loads(record.arguments) == {"ticket": 42}
    assert json.loads(record.result)["content"][0]["text"] == "tool_01 ok"
    assert record.is_error is False
    assert record.http_status == 200
    assert record.upstream_ms is not None and record.upstream_ms > 0
    assert record.total_ms >= record.upstream_ms
    assert record.request_bytes > 0 and record.response_bytes > 0


def test_failed_and_refused_calls_are_recorded(live_gateway, audited_endpoint, admin, member):
    audited = audited_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url("audited")

    disabled = call_tool(url, admin.token, "paged__tool_05")  # exists upstream, not enabled
    anonymous = call_tool(url, None, "paged__tool_00")
    wrong = call_tool(url, "gwt_not-a-token-at-all", "paged__tool_00")
    api_token_revoke(token=ApiToken.objects.get(user=member.user))
    time.sleep(1.1)  # the gateway caches token lookups for a second
    revoked = call_tool(url, member.token, "paged__tool_00")
    prompt = rpc(
        url,
        admin.token,
        "prompts/get",
        {"name": "paged__summarise", "arguments": {"memo": "hi"}},
        name="paged__summarise",
    )
    missing = rpc(
        url,
        admin.token,
        "resources/read",
        {"uri": "mcp-gateway://paged/memo://nothing-here"},
        name="mcp-gateway://paged/memo://nothing-here",
    )
    audited.connection.server_url = "http://127.0.0.1:9/mcp"  # the upstream goes away
    audited.connection.save()
    time.sleep(5.5)  # upstream targets are cached for five seconds
    down = call_tool(url, admin.token, "paged__tool_00")

    assert disabled.json()["error"]["message"] == "Unknown tool: paged__tool_05"
    assert anonymous.status_code == wrong.status_code == revoked.status_code == 401
    assert prompt.status_code == 200 and missing.status_code == 200
    assert down.json()["result"]["isError"] is True
    records = wait_for_records(7)
    by_kind = {(r.method, r.name, r.refusal or r.status): r for r in records}
    assert len(records) == 7, [(r.method, r.name, r.status, r.refusal) for r in records]

    refused = by_kind[("tools/call", "paged__tool_05", "not_enabled")]
    assert refused.status == "refused" and refused.username == "alice"
    assert refused.connection_id is None and refused.rpc_code == -32602

    unauthorized = [r for r in records if r.refusal == "unauthorized"]
    assert len(unauthorized) == 2
    assert all(r.user_id is None and r.http_status == 401 for r in unauthorized)
    assert all(str(r.endpoint_id) == str(audited.endpoint.pk) for r in unauthorized)

    (revoked_record,) = [r for r in records if r.refusal == "revoked"]
    assert revoked_record.username == "bob" and revoked_record.status == "refused"
    assert "revoked" in revoked_record.error_message

    prompt_record = by_kind[("prompts/get", "paged__summarise", "success")]
    assert prompt_record.upstream_name == "summarise"
    assert "Summarise: hi" in prompt_record.result
    missing_record = next(r for r in records if r.method == "resources/read")
    assert missing_record.status == "error"
    assert "nothing-here" in missing_record.error_message

    failed = by_kind[("tools/call", "paged__tool_00", "tool_error")]
    assert failed.is_error is True
    assert failed.error_message == "The server 'Paged' is unreachable right now."
    # Admins get the precise failure the client's short message stands for.
    assert failed.error_detail and failed.error_detail != failed.error_message
    assert "refused" in failed.error_detail.lower(), failed.error_detail


def test_the_connections_bearer_token_never_reaches_the_log(
    live_gateway, audited_endpoint, admin, tmp_path
):
    audited = audited_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url("audited")
    secret = audited.upstream_token

    # whoami echoes the Authorization header the upstream received; tool_00 echoes
    # the secret (planted in the arguments too) and a token-shaped string.
    whoami = call_tool(url, admin.token, "paged__whoami")
    planted = call_tool(
        url,
        admin.token,
        "paged__tool_00",
        {"echo": f"token={secret} and ghp_{'a' * 36}", "note": secret},
    )

    assert secret in whoami.text  # the client gets the tool's answer unchanged
    assert secret in planted.text
    records = wait_for_records(2)
    assert len(records) == 2
    for record in records:
        stored = json.dumps([record.arguments, record.result, record.error_message])
        assert secret not in stored
        assert "ghp_" not in stored
        assert record.secrets_redacted is True
        assert "[REDACTED]" in stored
    for leftover in (tmp_path / "audit-spool").glob("*.jsonl"):
        assert secret not in leftover.read_text()


def test_the_pii_filter_redacts_results_for_the_client_and_the_log(
    live_gateway, audited_endpoint, admin
):
    audited_endpoint(pii_filter=True)
    gateway = live_gateway()
    url = gateway.endpoint_url("audited")
    text = (
        "Mail jane.doe@example.com, call +1 415-555-0134, SSN 123-45-6789, "
        "card 4111 1111 1111 1111, not a card 4111 1111 1111 1112, host 10.1.2.3"
    )

    answer = call_tool(url, admin.token, "paged__tool_00", {"echo": text})

    shown = answer.json()["result"]["content"][0]["text"]
    assert "jane.doe@example.com" not in shown and "[REDACTED:email]" in shown
    assert "415-555-0134" not in shown and "[REDACTED:phone]" in shown
    assert "123-45-6789" not in shown and "[REDACTED:ssn]" in shown
    assert "4111 1111 1111 1111" not in shown and "[REDACTED:credit_card]" in shown
    assert "4111 1111 1111 1112" in shown  # fails the Luhn check
    assert "10.1.2.3" not in shown and "[REDACTED:ip]" in shown
    (record,) = wait_for_records(1)
    assert record.pii_kinds == ["credit_card", "email", "ip", "phone", "ssn"]
    assert "jane.doe@example.com" not in record.result
    assert "[REDACTED:email]" in record.result


def test_concurrent_calls_give_exactly_one_record_each(live_gateway, audited_endpoint, admin):
    audited_endpoint()
    gateway = live_gateway(GATEWAY_AUDIT_BATCH_SIZE="25")
    url = gateway.endpoint_url("audited")
    calls = 200

    def one(index: int) -> int:
        return call_tool(url, admin.token, "paged__tool_00", {"n": index}).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(one, range(calls)))

    assert statuses == [200] * calls
    records = wait_for_records(calls)
    assert len(records) == calls
    assert sorted(json.loads(r.arguments)["n"] for r in records) == list(range(calls))
    time.sleep(1.5)  # nothing more arrives later (no duplicates from a replay)
    assert AuditRecord.objects.count() == calls


def test_records_survive_a_killed_gateway_and_are_stored_at_the_next_start(
    live_gateway, audited_endpoint, admin, tmp_path
):
    audited_endpoint()
    spool = tmp_path / "crash-spool"
    slow = {
        "GATEWAY_AUDIT_SPOOL_DIR": str(spool),
        "GATEWAY_AUDIT_FLUSH_INTERVAL_MS": "3600000",
        "GATEWAY_AUDIT_BATCH_SIZE": "10000",
    }
    first = live_gateway(**slow)
    url = first.endpoint_url("audited")
    for index in range(20):
        assert call_tool(url, admin.token, "paged__tool_00", {"n": index}).status_code == 200

    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)

    assert AuditRecord.objects.count() == 0  # never flushed
    assert sum(len(p.read_text().splitlines()) for p in spool.glob("*.jsonl")) == 20
    live_gateway(**slow)  # the next process replays the dead one's spool at start-up
    records = wait_for_records(20)
    assert sorted(json.loads(r.arguments)["n"] for r in records) == list(range(20))
    assert list(spool.glob("*.jsonl")) == []


def test_waiting_records_are_flushed_on_shutdown(live_gateway, audited_endpoint, admin):
    audited_endpoint()
    gateway = live_gateway(
        GATEWAY_AUDIT_FLUSH_INTERVAL_MS="3600000", GATEWAY_AUDIT_BATCH_SIZE="10000"
    )
    url = gateway.endpoint_url("audited")
    for _ in range(5):
        call_tool(url, admin.token, "paged__tool_00")
    time.sleep(0.5)
    assert AuditRecord.objects.count() == 0

    gateway.process.terminate()
    gateway.process.wait(timeout=15)

    assert AuditRecord.objects.count() == 5


def test_handshake_and_legacy_sse_calls_carry_their_session_and_version(
    live_gateway, audited_endpoint, admin
):
    import asyncio

    import httpx2
    from mcp import Client
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    audited_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url("audited")

    async def scenario():
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {admin.token}"}, timeout=30)
        client = Client(streamable_http_client(url, http_client=http), mode="legacy", cache=None)
        async with http, client:
            await client.session.call_tool("paged__tool_00", {})
        headers = {"Authorization": f"Bearer {admin.token}"}
        async with Client(sse_client(url + "/sse", headers=headers), mode="legacy") as legacy:
            await legacy.session.call_tool("paged__tool_01", {})

    asyncio.run(scenario())

    records = {r.name: r for r in wait_for_records(2)}
    handshake, legacy = records["paged__tool_00"], records["paged__tool_01"]
    assert handshake.protocol_version == "2025-11-25" and len(handshake.session_id) == 32
    assert legacy.protocol_version == "2024-11-05" and len(legacy.session_id) == 32
    assert handshake.session_id != legacy.session_id
    assert handshake.status == legacy.status == "success"
    assert handshake.client_software  # the clientInfo of its initialize


def test_calls_refused_by_their_session_or_headers_are_recorded(
    live_gateway, audited_endpoint, admin
):
    import httpx

    audited_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url("audited")
    headers = {
        "Authorization": f"Bearer {admin.token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    init = httpx.post(
        url,
        headers=headers,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "refusal-tests", "version": "1"},
            },
        },
        timeout=30,
    )
    session_id = init.headers["mcp-session-id"]
    ended = httpx.delete(url, headers={**headers, "Mcp-Session-Id": session_id}, timeout=30)
    assert ended.status_code in (200, 204)
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "paged__tool_00", "arguments": {"after": "end"}},
    }
    after_end = httpx.post(url, headers={**headers, "Mcp-Session-Id": session_id}, json=call)
    # 2026-07-28: the Mcp-Name header must name the tool of the body.
    wrong_name = rpc(
        url,
        admin.token,
        "tools/call",
        {"name": "paged__tool_00", "arguments": {}},
        name="paged__tool_01",
    )

    assert after_end.status_code == 404
    assert wrong_name.status_code == 400
    records = {r.refusal: r for r in wait_for_records(2)}
    ended_record, mismatch_record = records["session_unknown"], records["invalid_request"]
    assert ended_record.status == mismatch_record.status == "refused"
    assert ended_record.username == mismatch_record.username == "alice"
    assert ended_record.name == mismatch_record.name == "paged__tool_00"
    assert json.loads(ended_record.arguments) == {"after": "end"}
    assert ended_record.http_status == 404 and len(ended_record.session_id) == 32
    assert mismatch_record.http_status == 400
    assert "Mcp-Name" in mismatch_record.error_message
