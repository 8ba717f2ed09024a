"""A flood of refused requests is a few rows and one count per source, not a row each."""

from __future__ import annotations

import pytest

from audit import recorder, refusals
from audit.models import AuditRecord
from audit.recorder import SpoolWriter, record_id_new, records_insert
from audit.refusals import RefusalLimiter, refusal_source
from tests.audit.conftest import call_tool, wait_for_records

ORG = "5b1d2c0e-3a4f-4c5d-8e9f-0a1b2c3d4e5f"


def _admit(limiter, source, now, org=ORG):
    return limiter.admit(
        organization_id=org,
        source=source,
        endpoint_id="0b9e4c1a-1111-4c5d-8e9f-0a1b2c3d4e5f",
        endpoint_name="Team tools",
        method="tools/call",
        request_bytes=2048,
        now=now,
    )


def test_it_admits_a_few_per_source_and_window_and_sums_up_the_rest_once():
    limiter = RefusalLimiter(per_window=3, window_seconds=60)
    admitted = [_admit(limiter, "203.0.113.7", 1000.0 + n) for n in range(10)]
    other = _admit(limiter, "198.51.100.1", 1005.0)

    assert admitted == [True] * 3 + [False] * 7 and other is True
    assert limiter.summaries(now=1030.0, new_id=record_id_new) == []  # the window is open
    (summary,) = limiter.summaries(now=1061.0, new_id=record_id_new)
    assert summary["error_message"] == "and 7 more refusals from 203.0.113.7 in the last minute"
    assert summary["status"] == "refused" and summary["refusal"] == refusals.SUMMARY_REFUSAL
    assert summary["organization_id"] == ORG and summary["endpoint_name"] == "Team tools"
    assert summary["request_bytes"] == 7 * 2048 and summary["at"] == 1009.0
    assert limiter.summaries(now=1200.0, new_id=record_id_new) == []  # each window once
    assert _admit(limiter, "203.0.113.7", 1200.0) is True  # a new window


def test_each_organisation_counts_on_its_own_and_the_table_of_sources_is_bounded():
    limiter = RefusalLimiter(per_window=1, window_seconds=60, max_sources=2)
    assert _admit(limiter, "a", 0.0, org="o1") and _admit(limiter, "a", 0.0, org="o2")
    # Full: new sources share one count per organisation.
    assert _admit(limiter, "b", 1.0, org="o1") is True
    assert _admit(limiter, "c", 2.0, org="o1") is False
    (summary,) = limiter.summaries(now=61.5, new_id=record_id_new)
    assert "from other sources" in summary["error_message"]


@pytest.mark.parametrize(
    ("client", "source"),
    [
        (("203.0.113.7", 5555), "203.0.113.7"),
        (["2001:db8:1:2:aaaa::1", 1], "2001:db8:1:2::/64"),
        (("::ffff:198.51.100.9", 1), "198.51.100.9"),
        (None, "unknown"),
    ],
)
def test_the_source_is_the_peer_address_and_ipv6_counts_by_its_network(client, source):
    assert refusal_source(client) == source


def test_a_windows_summary_is_spooled_and_stored(db, admin, tmp_path, monkeypatch):
    limiter = RefusalLimiter(per_window=1, window_seconds=60)
    monkeypatch.setattr(refusals, "limiter", limiter)
    spool = SpoolWriter(tmp_path, insert=records_insert)
    recorder.writer_set(spool)
    try:
        for n in range(6):
            _admit(limiter, "203.0.113.7", 1_700_000_000.0 + n, org=str(admin.organization.pk))
        assert recorder.refusal_summaries_append() == 1
        spool.flush()
    finally:
        recorder.writer_set(None)

    (row,) = AuditRecord.objects.all()
    assert row.status == "refused" and row.refusal == "more_refused"
    assert row.error_message == "and 5 more refusals from 203.0.113.7 in the last minute"


def test_live_forged_tokens_leave_a_bounded_number_of_short_records(
    live_gateway, audited_endpoint, admin
):
    audited_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url("audited")
    payload = {"blob": "A" * 2048}

    answers = [
        call_tool(url, f"gwt_forged-{n:04d}-xxxxxxxxxxxxxxxx", "paged__tool_00", payload)
        for n in range(refusals.PER_WINDOW + 10)
    ]
    ok = call_tool(url, admin.token, "paged__tool_01")

    assert all(answer.status_code == 401 for answer in answers)
    assert ok.status_code == 200
    records = wait_for_records(refusals.PER_WINDOW + 1)
    refused = [r for r in records if r.status == "refused"]
    assert len(refused) == refusals.PER_WINDOW
    assert all(len(r.arguments) <= refusals.MAX_ARGUMENTS for r in refused)
    assert all(r.arguments_truncated for r in refused)
    assert refused[0].arguments.startswith('{"blob":"AAAA')
    assert [r.name for r in records if r.status == "success"] == ["paged__tool_01"]
