"""/api/audit-logs: filters, cursor pagination, tenancy, detail and streamed export."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import timedelta

from django.utils import timezone

from tests.audit.factories_audit import make_records


def test_it_lists_newest_first_with_a_cursor_through_every_page(admin):
    make_records(admin.organization, 7)
    api = admin.api()

    first = api.get("/api/audit-logs?limit=3").json()
    second = api.get(f"/api/audit-logs?limit=3&cursor={first['nextCursor']}").json()
    third = api.get(f"/api/audit-logs?limit=3&cursor={second['nextCursor']}").json()

    seen = [r["arguments"] if "arguments" in r else r["id"] for r in first["records"]]
    assert len(seen) == 3
    ats = [r["at"] for page in (first, second, third) for r in page["records"]]
    assert len(ats) == 7 and ats == sorted(ats, reverse=True)
    assert third["nextCursor"] is None
    assert "arguments" not in first["records"][0]  # the list leaves payloads out


def test_the_page_costs_the_same_queries_whatever_its_depth(admin, django_assert_num_queries):
    make_records(admin.organization, 120)
    api = admin.api()
    page = api.get("/api/audit-logs?limit=10").json()
    for _ in range(5):
        page = api.get(f"/api/audit-logs?limit=10&cursor={page['nextCursor']}").json()

    # token lookup + last-use check, membership, page, the quarantine count: the same
    # at page 1 and page 7.
    with django_assert_num_queries(4) as first:
        api.get("/api/audit-logs?limit=10")
    with django_assert_num_queries(len(first.captured_queries)):
        api.get(f"/api/audit-logs?limit=10&cursor={page['nextCursor']}")


def test_filters_narrow_the_list(admin):
    endpoint_id, connection_id = uuid.uuid4(), uuid.uuid4()
    make_records(admin.organization, 3)
    make_records(
        admin.organization,
        2,
        endpoint_id=endpoint_id,
        connection_id=connection_id,
        status="refused",
        refusal="not_enabled",
        error_message="Unknown tool: secret__thing",
        user_id=admin.user.pk,
        client_name="Claude",
        name="secret__thing",
    )
    api = admin.api()

    def names(query: str) -> list[str]:
        response = api.get(f"/api/audit-logs?{query}")
        assert response.status_code == 200, response.json()
        return [r["name"] for r in response.json()["records"]]

    assert len(names(f"endpoint={endpoint_id}")) == 2
    assert len(names(f"connection={connection_id}")) == 2
    assert len(names("status=refused")) == 2
    assert len(names(f"user={admin.user.pk}")) == 2
    assert len(names("client=Claude")) == 2
    assert names("tool=paged__tool_01") == ["paged__tool_01"]
    assert len(names("q=unknown tool")) == 2  # the error message, any case
    assert len(names("q=THING")) == 2  # the tool name
    future = (timezone.now() + timedelta(days=1)).isoformat()
    assert names(f"since={future.replace('+', '%2B')}") == []
    bad = api.get("/api/audit-logs?status=bogus")
    assert bad.status_code == 400 and "status" in bad.json()["details"]
    assert api.get("/api/audit-logs?endpoint=nope").status_code == 400
    assert api.get("/api/audit-logs?cursor=%%%").status_code == 400


def test_members_see_only_their_own_calls_and_other_tenants_nothing(
    admin, member, auditor, other_admin
):
    make_records(admin.organization, 2, user_id=admin.user.pk, username="alice")
    mine = make_records(admin.organization, 1, user_id=member.user.pk, username="bob")
    theirs = make_records(other_admin.organization, 4)

    assert len(auditor.api().get("/api/audit-logs").json()["records"]) == 3
    member_view = member.api().get("/api/audit-logs").json()["records"]
    assert [r["id"] for r in member_view] == [str(mine[0].pk)]
    assert len(other_admin.api().get("/api/audit-logs").json()["records"]) == 4

    other = other_admin.api().get(f"/api/audit-logs/{mine[0].pk}")
    assert other.status_code == 404 and other.json() == {"error": "Audit record not found"}
    assert admin.api().get(f"/api/audit-logs/{theirs[0].pk}").status_code == 404
    assert member.api().get(f"/api/audit-logs/{admin.organization.pk}").status_code == 404


def test_the_detail_has_the_arguments_and_result_as_json(admin):
    (record,) = make_records(admin.organization, 1, result='{"content":[{"type":"text"}]}')
    (cut,) = make_records(admin.organization, 1, result='{"content":[{"ty', result_truncated=True)

    detail = admin.api().get(f"/api/audit-logs/{record.pk}").json()
    truncated = admin.api().get(f"/api/audit-logs/{cut.pk}").json()

    assert detail["arguments"] == {"n": 0}
    assert detail["result"] == {"content": [{"type": "text"}]}
    assert truncated["result"] == '{"content":[{"ty' and truncated["resultTruncated"] is True


def test_the_export_streams_the_filtered_set_in_batches(admin, monkeypatch):
    from audit import selectors

    monkeypatch.setattr(selectors, "EXPORT_BATCH", 100)
    make_records(admin.organization, 250, status="success")
    make_records(admin.organization, 5, status="refused", name="=cmd()")
    api = admin.api()

    response = api.get("/api/audit-logs/export.jsonl?status=success")
    assert response.streaming
    chunks = iter(response.streaming_content)
    first = next(chunks)
    assert json.loads(first)["status"] == "success"  # one record per chunk, lazily
    lines = [first, *chunks]
    assert len(lines) == 250
    assert len({json.loads(line)["id"] for line in lines}) == 250

    csv_response = api.get("/api/audit-logs/export.csv?status=refused")
    assert csv_response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(csv_response.streaming_content).decode())))
    assert len(rows) == 5
    assert rows[0]["name"] == "'=cmd()"  # never a spreadsheet formula
    assert api.get("/api/audit-logs/export.xml").status_code == 404


def test_the_export_reads_in_keyset_batches_not_the_whole_table(
    admin, monkeypatch, django_assert_num_queries
):
    from audit import selectors

    rows = make_records(admin.organization, 30)
    generator = selectors.audit_record_export_rows(
        membership=admin.membership, filters={}, batch=10
    )
    with django_assert_num_queries(1):
        first = next(generator)
    assert str(first["id"]) == str(rows[-1].pk)
    with django_assert_num_queries(3):  # two more batches and the empty end
        rest = list(generator)
    assert len(rest) == 29


def test_admins_set_the_retention_and_members_read_it(admin, member):
    assert member.api().get("/api/audit-policy").json() == {"retentionDays": 90}
    refused = member.api().patch("/api/audit-policy", {"retentionDays": 30}, format="json")
    assert refused.status_code == 403
    changed = admin.api().patch("/api/audit-policy", {"retentionDays": 30}, format="json")
    assert changed.json() == {"retentionDays": 30}
    bad = admin.api().patch("/api/audit-policy", {"retentionDays": 0}, format="json")
    assert bad.status_code == 400 and "retentionDays" in bad.json()["details"]
    assert member.api().get("/api/audit-policy").json() == {"retentionDays": 30}


def test_the_changes_list_is_for_admins_and_auditors(admin, member, auditor):
    admin.api().patch("/api/audit-policy", {"retentionDays": 30}, format="json")
    admin.api().post("/api/mcp-endpoints", {"name": "Support"}, format="json")
    events = auditor.api().get("/api/audit-events").json()["events"]
    # Newest first; the fixtures' tokens were made with no acting user (like the command).
    assert [e["action"] for e in events] == ["endpoint.created"] + ["token.created"] * 3
    assert events[0]["actorName"] == "alice" and events[0]["targetName"] == "Support"
    assert events[1]["actorId"] is None
    assert member.api().get("/api/audit-events").json() == {"events": []}
