"""Hostile filter values answer a clear 400, and no request can keep a database connection."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import OperationalError, connection

from tests.audit.factories_audit import make_records

HOSTILE = [
    "/api/audit-logs?q=x%00",
    "/api/audit-logs?tool=a%00b",
    "/api/audit-logs?client=%00",
    "/api/audit-logs/export.csv?q=x%00",
    "/api/audit-logs/export.jsonl?tool=%00",
    "/api/audit-logs/export.csv?client=c%00",
]


@pytest.mark.parametrize("path", HOSTILE)
def test_the_api_refuses_a_nul_in_a_filter_with_a_400_naming_it(admin, path):
    answer = admin.api().get(path)

    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == "Invalid filter."
    (field,) = body["details"]
    assert field in ("q", "tool", "client")


@pytest.mark.parametrize("path", ["/activity/?q=x%00", "/activity/export.csv?tool=%00"])
def test_the_activity_pages_refuse_a_nul_in_a_filter_with_a_400(admin, client, path):
    client.force_login(admin.user)

    assert client.get(path).status_code == 400


@pytest.mark.parametrize(
    "since",
    [
        "3313-02-04T18:41:33%2B20:41",  # an offset Python takes and PostgreSQL refuses
        "9999-12-31T23:59:59-15:00",  # beyond the last moment once in UTC
        "2026-13-40T00:00:00Z",  # the right shape, no such day
    ],
)
@pytest.mark.parametrize("path", ["/api/audit-logs", "/api/audit-logs/export.csv"])
def test_moments_the_database_cannot_hold_are_answered_without_a_server_error(admin, path, since):
    make_records(admin.organization, 2)

    answer = admin.api().get(f"{path}?since={since}")

    if since.startswith("3313"):
        # Taken in UTC: a valid moment, after every record.
        assert answer.status_code == 200
        body = b"".join(answer.streaming_content) if answer.streaming else answer.content
        assert b"3313" not in body and b"failed" not in body.lower()
    else:
        assert answer.status_code == 400
        assert "since" in answer.json()["details"]


def _backends(name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name])
        return int(cursor.fetchone()[0])


def test_live_two_hundred_hostile_exports_and_searches_leave_the_connections_bounded(
    live_gateway, admin
):
    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL backends")
    make_records(admin.organization, 30)
    pool = 6  # the gateway process's connections, at most
    gateway = live_gateway(GATEWAY_DB_POOL_MAX_SIZE=str(pool))
    headers = {"Authorization": f"Bearer {admin.token}"}
    name = connection.settings_dict["NAME"]
    with httpx.Client(base_url=gateway.base, headers=headers, timeout=30) as warm:
        assert warm.get("/api/audit-logs/export.csv").status_code == 200
    before = _backends(name)

    def hit(n: int) -> tuple[int, int]:
        # A mix: the hostile filters, and well-formed exports streamed to the end.
        path = HOSTILE[n % len(HOSTILE)] if n % 4 else "/api/audit-logs/export.jsonl"
        with httpx.Client(base_url=gateway.base, headers=headers, timeout=30) as client:
            answer = client.get(path)
            return answer.status_code, len(answer.content)

    peak = before
    with ThreadPoolExecutor(max_workers=8) as clients:
        statuses = []
        for start in range(0, 200, 40):  # bounded: 200 requests, 40 at a time
            statuses += list(clients.map(hit, range(start, start + 40)))
            peak = max(peak, _backends(name))

    # Every request answered (none hangs on a broken query), and the gateway never
    # held more connections than its pool, even with more requests in flight.
    assert {status for status, _ in statuses} == {200, 400}
    assert all(size > 0 for _, size in statuses)
    assert peak <= before + pool, (before, peak)
    assert _backends(name) <= before + pool
    with httpx.Client(base_url=gateway.base, headers=headers, timeout=30) as after:
        assert after.get("/api/audit-logs?limit=1").status_code == 200


def test_no_postgres_query_may_run_for_ever(db):
    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL setting")
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "30s"
        cursor.execute("SET LOCAL statement_timeout = 200")
        with pytest.raises(OperationalError, match="statement timeout"):
            cursor.execute("SELECT pg_sleep(5)")
