"""A live gateway (daphne in a subprocess) sharing the test database, and a served endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection as db_connection

from connections.models import CatalogEntry, CatalogKind, Connection
from connections.services import connection_check_health
from endpoints.services import endpoint_create, endpoint_entries_set_enabled
from tests.connections.conftest import (  # noqa: F401  (fixtures)
    start_oauth_upstream,
    start_upstream,
)
from tests.factories import ConnectionFactory
from tests.helpers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def _database_env() -> dict[str, str]:
    settings = db_connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return {"GATEWAY_SQLITE_PATH": str(settings["NAME"])}
    user = settings.get("USER") or "postgres"
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    return {"DATABASE_URL": f"postgres://{user}{password}@{host}:{port}/{settings['NAME']}"}


@dataclass
class LiveGateway:
    base: str
    port: int
    process: subprocess.Popen[bytes]
    log: Any = None  # the process's stderr (its log), a temporary file

    def endpoint_url(self, slug: str) -> str:
        return f"{self.base}/mcp/{slug}"

    def log_text(self) -> str:
        """Everything the gateway logged so far."""
        if self.log is None:
            return ""
        self.log.flush()
        self.log.seek(0)
        return str(self.log.read().decode(errors="replace"))


def start_gateway(port: int | None = None, extra_env: dict[str, str] | None = None) -> LiveGateway:
    port = port or free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server)
    env = {
        **os.environ,
        **_database_env(),
        "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "GATEWAY_ALLOW_PRIVATE_UPSTREAMS": "true",
        "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
        **(extra_env or {}),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "gateway_project.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_for_port(port, timeout=30)
    except TimeoutError:
        process.kill()
        log.seek(0)
        raise AssertionError(f"daphne did not start:\n{log.read().decode()[-3000:]}") from None
    return LiveGateway(base=f"http://127.0.0.1:{port}", port=port, process=process, log=log)


@pytest.fixture
def live_gateway(transactional_db, tmp_path):
    gateways: list[LiveGateway] = []

    def start(port: int | None = None, **extra_env: str) -> LiveGateway:
        # The activity log's spool of this test's gateways, away from the data folder.
        extra_env.setdefault("GATEWAY_AUDIT_SPOOL_DIR", str(tmp_path / "audit-spool"))
        gateway = start_gateway(port, extra_env)
        gateways.append(gateway)
        return gateway

    yield start
    for gateway in gateways:
        gateway.process.terminate()
        try:
            gateway.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            gateway.process.kill()


@dataclass
class ServedEndpoint:
    slug: str
    endpoint: object
    connection: object


@pytest.fixture
def served_endpoint(transactional_db, admin, start_upstream):  # noqa: F811
    """An endpoint federating the paged test server, with tool_00..tool_02, slow,
    whoami and grow enabled (the other tools stay off)."""

    def make(*, slug: str = "team", handshake_only: bool = False, enable=None) -> ServedEndpoint:
        upstream = start_upstream(handshake_only=handshake_only)
        connection: Connection = ConnectionFactory(  # type: ignore[assignment]
            organization=admin.organization, name="Paged", slug="paged", server_url=upstream.url
        )
        check = connection_check_health(connection=connection)
        assert check.ok, check.error
        endpoint = endpoint_create(
            organization=admin.organization,
            name="Team tools",
            description="Tools for the team.",
            slug=slug,
            connection_ids=[str(connection.pk)],
        )
        wanted = enable or ["tool_00", "tool_01", "tool_02", "slow", "whoami", "grow"]
        entries = CatalogEntry.objects.filter(
            connection=connection, kind=CatalogKind.TOOL, key__in=wanted
        )
        endpoint_entries_set_enabled(
            endpoint=endpoint, entry_ids=[e.pk for e in entries], enabled=True
        )
        others = CatalogEntry.objects.filter(connection=connection).exclude(kind=CatalogKind.TOOL)
        endpoint_entries_set_enabled(
            endpoint=endpoint, entry_ids=[e.pk for e in others], enabled=True
        )
        return ServedEndpoint(slug=slug, endpoint=endpoint, connection=connection)

    return make
