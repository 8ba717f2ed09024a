"""Periodic health checks with Celery: fan-out, claims, and a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection as db
from django.utils import timezone

from connections import tasks
from connections.models import Connection
from connections.services import connection_claim_check
from tests.factories import ConnectionFactory
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_the_beat_task_fans_out_one_check_per_due_connection(org, monkeypatch):
    due = ConnectionFactory(organization=org)
    later = ConnectionFactory(organization=org, next_check_at=timezone.now() + timedelta(hours=1))
    claimed = ConnectionFactory(
        organization=org, check_claimed_until=timezone.now() + timedelta(minutes=5)
    )
    sent: list[tuple] = []
    monkeypatch.setattr(
        tasks.connection_check, "apply_async", lambda args, expires: sent.append((args, expires))
    )

    assert tasks.connections_check_due() == 1

    assert sent == [((str(due.pk),), 60.0)]
    assert later and claimed


def test_a_claim_is_exclusive_until_its_lease_runs_out(org):
    connection = ConnectionFactory(organization=org)

    assert connection_claim_check(connection_id=connection.pk, lease=timedelta(minutes=1))
    assert not connection_claim_check(connection_id=connection.pk, lease=timedelta(minutes=1))
    Connection.objects.filter(pk=connection.pk).update(
        check_claimed_until=timezone.now() - timedelta(seconds=1)
    )
    assert connection_claim_check(connection_id=connection.pk, lease=timedelta(minutes=1))


def test_a_claimed_connection_is_not_checked_twice(org):
    connection = ConnectionFactory(
        organization=org, check_claimed_until=timezone.now() + timedelta(minutes=5)
    )

    assert tasks.connection_check(str(connection.pk)) is False
    connection.refresh_from_db()
    assert connection.last_health_check_at is None


def test_a_check_that_raises_pushes_its_next_run_forward(org, monkeypatch):
    connection = ConnectionFactory(organization=org)

    def explode(**kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(tasks, "connection_check_health", explode)

    assert tasks.connection_check(str(connection.pk)) is True
    connection.refresh_from_db()
    assert connection.next_check_at > timezone.now() + timedelta(minutes=5)
    assert connection.check_claimed_until is None


@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_runs_a_health_check(org, start_upstream):
    """The task goes through the configured broker (Redis in CI) to a worker process."""
    settings_dict = db.settings_dict
    if db.vendor != "postgresql":
        pytest.skip("the worker process needs a shared database: run with DATABASE_URL (CI does)")
    if not os.environ.get("REDIS_URL"):
        pytest.skip("run with REDIS_URL to use the Redis broker (CI does)")
    upstream = start_upstream(tools=2)
    connection = ConnectionFactory(organization=org, server_url=upstream.url)
    user = settings_dict.get("USER") or "postgres"
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{user}@{host}:{port}/{settings_dict['NAME']}",
        "PYTHONUNBUFFERED": "1",
    }
    queue = f"test-{free_port()}"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "gateway_project",
            "worker",
            "--pool",
            "solo",
            "--queues",
            queue,
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        tasks.connection_check.apply_async(args=(str(connection.pk),), queue=queue)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            connection.refresh_from_db()
            if connection.last_health_check_at is not None:
                break
            time.sleep(0.3)
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0].decode(errors="replace")
    assert connection.last_health_check_at is not None, output[-2000:]
    assert connection.status == "active"
    assert connection.server_name == "paged-test-server"
