"""An endpoint whose upstream needs a bearer token, for the activity log's live tests."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from audit.models import AuditRecord
from connections.models import CatalogEntry, CatalogKind, Connection
from connections.services import connection_check_health
from endpoints.models import Endpoint
from endpoints.services import endpoint_create, endpoint_entries_set_enabled
from tests.connections.conftest import start_upstream  # noqa: F401  (a fixture)
from tests.factories import ConnectionFactory
from tests.transport.conftest import live_gateway  # noqa: F401  (a fixture)

META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "audit-tests", "version": "1.0"},
}


@dataclass
class Audited:
    endpoint: Endpoint
    connection: Connection
    upstream_token: str
    url: str = ""


@pytest.fixture
def audited_endpoint(transactional_db, admin, start_upstream):  # noqa: F811
    """``make(pii_filter=False)``: an endpoint over the paged server, which only answers
    with the connection's bearer token; tool_00, tool_01, whoami, the prompt and the
    resources enabled."""

    def make(*, slug: str = "audited", pii_filter: bool = False) -> Audited:
        token = "upstream-secret-" + secrets.token_hex(16)
        upstream = start_upstream(token=token)
        connection: Connection = ConnectionFactory(  # type: ignore[assignment]
            organization=admin.organization,
            name="Paged",
            slug="paged",
            server_url=upstream.url,
            auth_type="bearer",
            credential={"token": token, "headers": {}},
        )
        check = connection_check_health(connection=connection)
        assert check.ok, check.error
        endpoint = endpoint_create(
            organization=admin.organization,
            name="Audited tools",
            slug=slug,
            connection_ids=[str(connection.pk)],
            pii_filter=pii_filter,
        )
        entries = CatalogEntry.objects.filter(connection=connection).exclude(
            kind=CatalogKind.TOOL
        ) | CatalogEntry.objects.filter(
            connection=connection, kind=CatalogKind.TOOL, key__in=["tool_00", "tool_01", "whoami"]
        )
        endpoint_entries_set_enabled(
            endpoint=endpoint, entry_ids=[e.pk for e in entries], enabled=True
        )
        return Audited(endpoint=endpoint, connection=connection, upstream_token=token)

    return make


def rpc(
    url: str, token: str | None, method: str, params: dict[str, Any], *, name: str | None = None
) -> httpx.Response:
    """One 2026-07-28 (stateless) request, headers mirrored as the revision requires."""
    headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if name is not None:
        headers["Mcp-Name"] = name
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": META}}
    return httpx.post(url, json=body, headers=headers, timeout=30)


def call_tool(url: str, token: str | None, tool: str, arguments: dict[str, Any] | None = None):
    params: dict[str, Any] = {"name": tool}
    if arguments is not None:
        params["arguments"] = arguments
    return rpc(url, token, "tools/call", params, name=tool)


def wait_for_records(count: int, timeout: float = 15.0, **filters: Any) -> list[AuditRecord]:
    """The records once ``count`` of them are stored (the writer flushes in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(AuditRecord.objects.filter(**filters).order_by("at", "id"))
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.1)
