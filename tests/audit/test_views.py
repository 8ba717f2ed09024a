"""The Activity pages: tenancy, filters, flat query count, detail, export."""

from __future__ import annotations

from tests.audit.factories_audit import make_records


def test_the_activity_page_lists_newest_first_and_pages_with_flat_queries(
    admin, client, django_assert_num_queries
):
    make_records(admin.organization, 120, user_id=admin.user.pk, username="alice")
    client.force_login(admin.user)

    first = client.get("/activity/")
    assert first.status_code == 200
    assert first.content.count(b'class="status-success"') == 50
    cursor = first.context["page"].next_cursor
    assert cursor
    with django_assert_num_queries(len(_queries(client, "/activity/"))):
        deeper = client.get(f"/activity/?cursor={cursor}")
    assert deeper.status_code == 200


def _queries(client, url):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    return captured.captured_queries


def test_a_member_sees_only_their_own_calls(admin, member, client):
    make_records(admin.organization, 3, user_id=admin.user.pk, name="admin__tool")
    (own,) = make_records(admin.organization, 1, user_id=member.user.pk, name="bob__tool")
    client.force_login(member.user)

    page = client.get("/activity/")
    assert b"bob__tool" in page.content and b"admin__tool" not in page.content
    other = make_records(admin.organization, 1, user_id=admin.user.pk)[0]
    assert client.get(f"/activity/{other.pk}").status_code == 404
    assert client.get(f"/activity/{own.pk}").status_code == 200


def test_another_organisations_record_is_not_found(admin, other_admin, client):
    (theirs,) = make_records(other_admin.organization, 1)
    client.force_login(admin.user)
    assert client.get(f"/activity/{theirs.pk}").status_code == 404
    assert client.get("/activity/not-a-uuid").status_code == 404


def test_the_detail_pretty_prints_arguments_and_result(admin, client):
    (record,) = make_records(
        admin.organization, 1, arguments='{"a":{"b":1}}', pii_redacted="email,phone"
    )
    client.force_login(admin.user)
    page = client.get(f"/activity/{record.pk}").content.decode()
    assert "{\n  &quot;a&quot;: {\n    &quot;b&quot;: 1\n  }\n}" in page
    assert "email, phone" in page


def test_the_export_downloads_the_filtered_set(admin, client):
    make_records(admin.organization, 4, status="success")
    make_records(admin.organization, 2, status="refused")
    client.force_login(admin.user)
    response = client.get("/activity/export.jsonl?status=refused")
    assert response.streaming
    assert len(b"".join(response.streaming_content).splitlines()) == 2
    assert client.get("/activity/?status=nope").status_code == 400


def test_an_admin_sets_the_retention_on_the_activity_page(admin, auditor, client):
    client.force_login(auditor.user)
    assert b"kept for 90 days" in client.get("/activity/").content
    assert client.post("/activity/retention", {"retention_days": "30"}).status_code == 403
    client.force_login(admin.user)
    client.post("/activity/retention", {"retention_days": "30"})
    assert b"kept for 30 days" in client.get("/activity/").content
    client.post("/activity/retention", {"retention_days": "zero"})
    assert b"kept for 30 days" in client.get("/activity/").content
