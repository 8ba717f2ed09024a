"""Text the database cannot hold (NUL, lone surrogates) never costs a record.

PostgreSQL refuses NUL and the driver cannot encode a lone surrogate; SQLite takes
both, so these tests mean most when run on PostgreSQL (CI does).
"""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import httpx

from audit.models import AuditRecord
from audit.recorder import SpoolWriter, call_record, record_id_new, records_insert
from endpoints.mcp.engine import Route, ServedView
from tests.audit.conftest import META, call_tool, wait_for_records


def _ctx(organization_id, client_name="claude-ai", **extra):
    principal = SimpleNamespace(
        user_id=None, username="", organization_id=organization_id, token_id="", token_kind=""
    )
    return SimpleNamespace(
        view=ServedView(
            endpoint_id=str(uuid.uuid4()), name="Support", version="1", instructions=""
        ),
        protocol_version="2025-11-25",
        principal=principal,
        session_id="signed-session-id",
        client_info={"name": client_name, "version": "0.1"},
        route=Route(str(uuid.uuid4()), "search", "Docs"),
        upstream_seconds=0.01,
        **extra,
    )


def _call(ctx, name, arguments, response):
    return call_record(
        ctx=ctx,
        message={"method": "tools/call", "params": {"name": name, "arguments": arguments}},
        response=response,
        http_status=200,
        started_at=1_700_000_000.0,
        total_seconds=0.02,
        request_bytes=99,
    )


def test_nul_and_lone_surrogates_anywhere_in_a_call_are_stored_replaced_and_noted(
    db, admin, tmp_path
):
    org = admin.organization.pk
    hostile = _call(
        _ctx(org, client_name="bad\ud800client"),
        "x\x00y",
        {"k\x00ey": ["\ud800", "fine"], "n": 1},
        {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "a\x00b"}]}},
    )
    failed = _call(
        _ctx(org),
        "lone\udfff",
        {"q": "ok"},
        {"jsonrpc": "2.0", "id": 2, "error": {"code": -32602, "message": "Unknown tool: \ud800"}},
    )
    plain = _call(_ctx(org), "docs__search", {"q": "ok"}, {"jsonrpc": "2.0", "id": 3, "result": {}})
    writer = SpoolWriter(tmp_path, insert=records_insert)
    for record in (hostile, failed, plain):
        writer.append(record)

    assert writer.flush() == 3
    stored = {r.name: r for r in AuditRecord.objects.all()}
    assert set(stored) == {"x\ufffdy", "lone\ufffd", "docs__search"}
    first = stored["x\ufffdy"]
    assert first.text_replaced is True
    assert first.client_software == "bad\ufffdclient 0.1"
    assert json.loads(first.arguments) == {"k\ufffdey": ["\ufffd", "fine"], "n": 1}
    # A NUL alone inside JSON is its escape: storable as it is, and kept.
    assert json.loads(first.result)["content"][0]["text"] == "a\x00b"
    assert stored["lone\ufffd"].error_message == "Unknown tool: \ufffd"
    assert stored["lone\ufffd"].text_replaced is True
    assert stored["docs__search"].text_replaced is False
    assert list(tmp_path.glob("*.jsonl")) == []


def test_a_spool_line_holding_a_nul_from_an_older_writer_is_stored_replaced(db, admin, tmp_path):
    line = {
        "id": record_id_new(),
        "at": 1_700_000_000.0,
        "organization_id": str(admin.organization.pk),
        "method": "tools/call",
        "name": "x\x00y",
        "status": "refused",
    }
    (tmp_path / "spool-1-aa-000001.jsonl").write_text(json.dumps(line) + "\n")
    escaped = dict(line, id=record_id_new(), name="PLACEHOLDER")
    raw = json.dumps(escaped).replace("PLACEHOLDER", "s\\ud800")  # what orjson refuses
    (tmp_path / "spool-1-aa-000002.jsonl").write_text(raw + "\n")

    assert SpoolWriter(tmp_path, insert=records_insert).replay() == 2

    assert sorted(AuditRecord.objects.values_list("name", "text_replaced")) == [
        ("s\ufffd", True),
        ("x\ufffdy", True),
    ]


def test_an_out_of_range_size_or_code_from_outside_is_not_stored_as_is(db, admin, tmp_path):
    record = call_record(
        ctx=_ctx(admin.organization.pk),
        message={"method": "tools/call", "params": {"name": "t"}},
        response={"jsonrpc": "2.0", "id": 1, "error": {"code": 10**12, "message": "m"}},
        http_status=200,
        started_at=1_700_000_000.0,
        total_seconds=0.0,
        request_bytes=10**12,  # a Content-Length header says what its sender wants
    )
    records_insert([record])

    stored = AuditRecord.objects.get()
    assert stored.rpc_code is None and stored.request_bytes == 0


def _raw_call(url: str, body: str, token: str | None = None, name: str = "") -> httpx.Response:
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
    }
    if name:
        headers["Mcp-Name"] = name
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(url, content=body.encode(), headers=headers, timeout=30)


def test_live_a_nul_in_an_unauthenticated_tool_name_neither_loses_its_record_nor_jams_the_log(
    live_gateway, audited_endpoint, admin
):
    audited_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url("audited")
    meta = json.dumps(META)
    hostile = (
        '{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        '"params":{"name":"x\\u0000y","arguments":{"a":"b\\u0000"},"_meta":' + meta + "}}"
    )

    refused = _raw_call(url, hostile)
    later = [call_tool(url, admin.token, "paged__tool_00") for _ in range(3)]

    assert refused.status_code == 401
    assert all(answer.status_code == 200 for answer in later)
    records = wait_for_records(4)
    assert len(records) == 4, [(r.name, r.status) for r in records]
    (nul,) = [r for r in records if r.status == "refused"]
    assert nul.name == "x\ufffdy" and nul.text_replaced is True
    assert sum(r.status == "success" for r in records) == 3


def test_live_a_lone_surrogate_in_the_client_name_still_leaves_a_record(
    live_gateway, audited_endpoint, admin
):
    audited_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url("audited")
    meta = dict(META)
    meta["io.modelcontextprotocol/clientInfo"] = {"name": "PLACEHOLDER", "version": "1"}
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "paged__tool_00", "_meta": meta},
        }
    ).replace("PLACEHOLDER", "evil\\ud800")

    answer = _raw_call(url, body, admin.token, name="paged__tool_00")

    if answer.status_code == 200 and "result" in answer.json():
        # Answered: the call must be in the log, its client name made storable.
        (record,) = wait_for_records(1)
        assert record.client_software == "evil\ufffd 1"
        assert record.text_replaced is True
    else:
        # Refused at parse (invalid Unicode): a JSON-RPC error, and nothing went upstream.
        assert answer.status_code in (200, 400)
        assert answer.json()["error"]["code"] in (-32700, -32600)
    ok = call_tool(url, admin.token, "paged__tool_01")
    assert ok.status_code == 200
    assert wait_for_records(1, name="paged__tool_01")


def test_a_management_event_with_unstorable_names_or_details_is_stored_replaced(db, admin):
    from audit.models import ManagementEvent
    from audit.services import management_event_record

    management_event_record(
        organization_id=admin.organization.pk,
        action="endpoint.entries_changed",
        target_type="endpoint",
        target_name="tools\x00",
        details={"renamed": {"x\x00": "\ud800"}},
    )

    event = ManagementEvent.objects.get(action="endpoint.entries_changed")
    assert event.target_name == "tools\ufffd"
    assert event.details == {"renamed": {"x\ufffd": "\ufffd"}}
    assert event.text_replaced is True
