"""What the activity log costs: per call on the hot path, per record in the writer, and
the Activity queries over a million rows.

``python benchmarks/audit_bench.py [--rows 1000000] [--calls 20000]``

Runs in its own data folder (a temporary SQLite database, or ``--database-url``):

1. hot path: ``call_record`` + ``SpoolWriter.append`` (redaction, JSON, one
   ``os.write``) for a small ``tools/call`` and for one with a 64 KiB result, in µs per
   call, with and without the PII filter;
2. the writer: ``records_insert`` (one bulk insert) in µs per record;
3. the Activity page's queries on ``--rows`` records (seeded with one bulk insert per
   50,000): the first page, a deep page through the cursor, each filter, and the
   free-text search, in ms, with SQLite's query plan for the first page.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _setup(database_url: str | None) -> Path:
    data = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    os.environ["GATEWAY_DATA_DIR"] = str(data)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    os.environ["GATEWAY_DEMO"] = "false"
    os.environ["GATEWAY_LOG_LEVEL"] = "WARNING"
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return data


class _View:
    endpoint_id = str(uuid.uuid4())
    name = "Bench endpoint"
    pii_filter = False


class _Route:
    connection_id = str(uuid.uuid4())
    upstream_name = "search"
    server_label = "Bench server"


class _Principal:
    user_id = 1
    username = "bench"
    organization_id = uuid.uuid4()
    token_id = str(uuid.uuid4())
    token_kind = "api_token"
    client_name = "bench"


class _Ctx:
    view = _View()
    principal = _Principal()
    protocol_version = "2025-11-25"
    session_id = "s" * 120
    client_info = {"name": "bench", "version": "1"}
    route = _Route()
    upstream_seconds = 0.0004


def hot_path(calls: int, spool: Path) -> dict[str, float]:
    from audit.pii import pii_redact
    from audit.recorder import SpoolWriter, call_record

    writer = SpoolWriter(spool, insert=lambda records: None)
    message = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "bench__search", "arguments": {"query": "open orders", "limit": 10}},
    }
    small = {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {"content": [{"type": "text", "text": "order 1234: shipped, 2 items"}]},
    }
    large = {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {"content": [{"type": "text", "text": "lorem ipsum dolor " * 3641}]},
    }
    figures: dict[str, float] = {}
    for label, response, pii in (
        ("small result", small, False),
        ("small result, PII filter on", small, True),
        ("64 KiB result", large, False),
        ("64 KiB result, PII filter on", large, True),
    ):
        count = calls if response is small else max(200, calls // 50)
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(count):
                found: set[str] = set()
                if pii:
                    pii_redact(response["result"], found)
                record = call_record(
                    ctx=_Ctx,
                    message=message,
                    response=response,
                    http_status=200,
                    started_at=time.time(),
                    total_seconds=0.001,
                    request_bytes=180,
                    pii_found=found,
                )
                writer.append(record)
            samples.append((time.perf_counter() - started) / count * 1e6)
            writer._buffer.clear()
        figures[label] = median(samples)
    return figures


def writer_insert(count: int) -> float:
    from audit.models import AuditRecord
    from audit.recorder import call_record, records_insert

    message = {"method": "tools/call", "params": {"name": "bench__search", "arguments": {"q": 1}}}
    response = {"result": {"content": [{"type": "text", "text": "ok"}]}}
    records = [
        call_record(
            ctx=_Ctx,
            message=message,
            response=response,
            http_status=200,
            started_at=time.time(),
            total_seconds=0.001,
            request_bytes=100,
        )
        for _ in range(count)
    ]
    started = time.perf_counter()
    for start in range(0, count, 500):
        records_insert(records[start : start + 500])
    elapsed = time.perf_counter() - started
    AuditRecord.objects.all().delete()
    return elapsed / count * 1e6


def seed(rows: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    from audit.models import AuditRecord
    from audit.recorder import record_id_new
    from oauth.models import Membership, Organization, Role

    organization = Organization.objects.create(name="Bench", slug=f"bench-{uuid.uuid4().hex[:6]}")
    user = get_user_model().objects.create(username=f"auditor-{uuid.uuid4().hex[:6]}")
    membership = Membership.objects.create(organization=organization, user=user, role=Role.AUDITOR)
    endpoints = [uuid.uuid4() for _ in range(5)]
    connections = [uuid.uuid4() for _ in range(20)]
    statuses = ["success"] * 17 + ["tool_error", "error", "refused"]
    start = time.time() - rows  # one record a second
    started = time.perf_counter()
    batch: list[AuditRecord] = []
    for index in range(rows):
        at = start + index
        batch.append(
            AuditRecord(
                id=record_id_new(at),
                at=_dt(at),
                organization_id=organization.pk,
                endpoint_id=endpoints[index % 5],
                endpoint_name="Endpoint",
                connection_id=connections[index % 20],
                connection_name="Server",
                method="tools/call",
                name=f"server{index % 20}__tool_{index % 37}",
                upstream_name=f"tool_{index % 37}",
                status=statuses[index % 20],
                user_id=index % 50,
                username=f"user{index % 50}",
                client_name=f"client{index % 7}",
                error_message="The server 'Server' did not answer in time."
                if index % 20 == 18
                else "",
                arguments='{"q": "x"}',
                result='{"content": []}',
                total_ms=1.0,
            )
        )
        if len(batch) == 50_000:
            AuditRecord.objects.bulk_create(batch, batch_size=5000)
            batch = []
    if batch:
        AuditRecord.objects.bulk_create(batch, batch_size=5000)
    from django.db import connection

    if connection.vendor == "postgresql":
        # Fresh statistics, as autovacuum would gather them soon after such a load: without
        # them the planner guesses, and neither the cursor nor the trigram index is used.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE audit_auditrecord")
    return {
        "membership": membership,
        "endpoint": str(endpoints[2]),
        "connection": str(connections[3]),
        "seconds": time.perf_counter() - started,
    }


def _dt(timestamp: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC)


def queries(seeded: dict[str, Any]) -> dict[str, float]:
    from django.db import connection

    from audit.selectors import audit_record_page, audit_record_queryset

    membership = seeded["membership"]

    def timed(filters: dict[str, str], cursor: str | None = None) -> float:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            audit_record_page(membership=membership, filters=filters, cursor=cursor)
            samples.append((time.perf_counter() - started) * 1000)
        return median(samples)

    page = audit_record_page(membership=membership, filters={})
    depth, deep = 1, None
    while depth < 201 and page.next_cursor:  # 200 pages of 50 = 10,000 records deep
        deep = page.next_cursor
        page = audit_record_page(membership=membership, filters={}, cursor=deep)
        depth += 1
    figures = {
        "first page": timed({}),
        f"page {depth} (cursor)": timed({}, deep if depth > 1 else None),
        "endpoint filter": timed({"endpoint": seeded["endpoint"]}),
        "server filter": timed({"connection": seeded["connection"]}),
        "tool filter": timed({"tool": "server3__tool_3"}),
        "user filter": timed({"user": "7"}),
        "client filter": timed({"client": "client3"}),
        "status filter (refused, 5%)": timed({"status": "refused"}),
        "time range (one day)": timed(
            {
                "since": _dt(time.time() - 86400 * 3).isoformat(),
                "until": _dt(time.time()).isoformat(),
            }
        ),
        "text search, frequent match": timed({"q": "did not answer"}),
        "text search, no match (full scan)": timed({"q": "zzz-nothing"}),
    }
    if connection.vendor == "sqlite":
        sql, params = audit_record_queryset(membership=membership).query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql} LIMIT 51", params)
            figures["plan"] = " | ".join(str(row[-1]) for row in cursor.fetchall())  # type: ignore[assignment]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    data = _setup(args.database_url)
    report: dict[str, Any] = {}
    print("hot path, µs per recorded call (call_record + spool append):")
    for label, value in hot_path(args.calls, data / "spool").items():
        print(f"  {label:32} {value:8.1f}")
        report[f"hot path µs: {label}"] = value
    per_record = writer_insert(5000)
    print(f"writer, µs per record (bulk insert, background thread): {per_record:.1f}")
    report["writer µs per record"] = per_record
    if args.rows:
        seeded = seed(args.rows)
        print(f"seeded {args.rows:,} records in {seeded['seconds']:.0f} s")
        print("Activity queries, ms (median of 5):")
        for label, value in queries(seeded).items():
            text = value if isinstance(value, str) else f"{value:8.2f}"
            print(f"  {label:36} {text}")
            report[f"query: {label}"] = value
    out = REPO / "benchmarks" / "results" / "audit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
