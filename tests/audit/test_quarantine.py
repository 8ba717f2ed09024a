"""A segment that cannot be stored costs nothing else: it is quarantined, the rest flows."""

from __future__ import annotations

import json

import pytest

from audit.models import AuditRecord, QuarantinedSegment
from audit.quarantine import QUARANTINE_DIR
from audit.recorder import SpoolWriter, record_id_new, records_insert


def _segment(directory, name: str, records: list[dict]) -> None:
    lines = "".join(json.dumps(record) + "\n" for record in records)
    (directory / f"spool-1-aa-{name}.jsonl").write_text(lines)


def _row(org, name: str, **extra) -> dict:
    return {
        "id": record_id_new(),
        "at": 1_700_000_000.0,
        "organization_id": str(org),
        "method": "tools/call",
        "name": name,
        "status": "success",
        **extra,
    }


class OperationalError(Exception):
    """Named like the drivers' error for a database that is down."""


class Store:
    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.down = False

    def __call__(self, records: list[dict]) -> None:
        if self.down:
            raise OperationalError("connection refused")
        if any(record.get("poison") for record in records):
            raise ValueError("value out of range")
        for record in records:
            self.rows.setdefault(record["id"], record)


def test_a_segment_failing_twice_is_quarantined_and_the_others_keep_flowing(tmp_path):
    store, notes = Store(), []
    writer = SpoolWriter(tmp_path, insert=store, on_quarantine=notes.append)
    _segment(tmp_path, "000001", [_row("o", "a1"), _row("o", "bad", poison=True), _row("o", "a2")])
    _segment(tmp_path, "000002", [_row("o", "b1"), _row("o", "b2")])

    assert writer.replay() == 2  # the second segment, although the first one fails
    assert sorted(r["name"] for r in store.rows.values()) == ["b1", "b2"]
    assert not (tmp_path / QUARANTINE_DIR).exists()  # a first failure may be bad luck

    assert writer.replay() == 2  # the failing segment's good records, one by one
    assert sorted(r["name"] for r in store.rows.values()) == ["a1", "a2", "b1", "b2"]
    assert list(tmp_path.glob("spool-*.jsonl")) == []
    quarantined = tmp_path / QUARANTINE_DIR / "spool-1-aa-000001.jsonl"
    assert [json.loads(line)["name"] for line in quarantined.read_text().splitlines()] == ["bad"]
    reason = (tmp_path / QUARANTINE_DIR / "spool-1-aa-000001.jsonl.reason").read_text()
    assert "ValueError: value out of range" in reason
    (note,) = notes
    assert note.per_organization == {None: 1}  # "o" names no organisation
    assert writer.quarantined_segments == 1 and writer.quarantined_records == 1
    assert writer.replay() == 0


def test_a_database_that_is_down_never_gets_a_segment_quarantined(tmp_path):
    store, notes = Store(), []
    writer = SpoolWriter(tmp_path, insert=store, on_quarantine=notes.append)
    _segment(tmp_path, "000001", [_row("o", "a1")])
    store.down = True
    for _ in range(5):
        with pytest.raises(OperationalError):  # the pass stops: every segment would fail
            writer.replay()
    assert notes == [] and len(list(tmp_path.glob("spool-*.jsonl"))) == 1

    store.down = False
    assert writer.replay() == 1


def test_on_the_database_a_poisoned_segment_costs_only_its_bad_record(
    transactional_db, admin, member, client, tmp_path
):
    org = admin.organization.pk
    _segment(tmp_path, "000001", [_row(org, "first")])
    # A negative size breaks the table's CHECK constraint: the whole insert fails.
    _segment(tmp_path, "000002", [_row(org, "ok"), _row(org, "bad", request_bytes=-1)])
    _segment(tmp_path, "000003", [_row(org, "third"), _row(org, "fourth")])
    writer = SpoolWriter(tmp_path, insert=records_insert)

    assert writer.replay() == 3
    assert writer.replay() == 1

    assert sorted(AuditRecord.objects.values_list("name", flat=True)) == [
        "first",
        "fourth",
        "ok",
        "third",
    ]
    (row,) = QuarantinedSegment.objects.all()
    assert row.organization_id == org and row.records == 1
    assert row.segment == "spool-1-aa-000002.jsonl"
    assert "request_bytes" in row.reason or "check" in row.reason.lower()
    assert (tmp_path / QUARANTINE_DIR / "spool-1-aa-000002.jsonl").exists()

    page = admin.api().get("/api/audit-logs").json()
    assert page["quarantine"]["records"] == 1 and page["quarantine"]["segments"] == 1
    assert page["quarantine"]["lastReason"] == row.reason
    assert member.api().get("/api/audit-logs").json()["quarantine"] is None
    client.force_login(admin.user)
    assert b"1 record could not be stored" in client.get("/activity/").content
    client.force_login(member.user)
    assert b"could not be stored" not in client.get("/activity/").content
