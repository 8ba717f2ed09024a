"""The gateway as an MCP client: catalog, health checks and failure reasons, against real
upstream servers on loopback."""

from __future__ import annotations

import json
import socket

import anyio
import pytest

from connections.models import CatalogEntry, CatalogKind, CatalogState, Connection, HealthCheck
from connections.services import (
    connection_catalog_store,
    connection_check_health,
    connection_create,
)
from connections.upstream import CatalogSnapshot, UpstreamError, UpstreamTarget, upstream_session
from tests.factories import ConnectionFactory
from tests.helpers import free_port


def test_a_check_fetches_every_page_of_the_catalog_and_marks_the_server_active(org, start_upstream):
    upstream = start_upstream(token="tok-123", tools=25)
    connection = connection_create(
        organization=org, name="Paged", server_url=upstream.url, auth_type="bearer", token="tok-123"
    )

    check = connection_check_health(connection=connection)

    assert check.ok, check.error
    connection.refresh_from_db()
    assert connection.status == "active"
    assert connection.last_health_check_at is not None
    assert connection.last_check_latency_ms is not None
    assert connection.server_name == "paged-test-server"
    assert connection.server_version == "9.9.9"
    assert connection.protocol_version == "2026-07-28"
    assert connection.server_instructions.startswith("Test upstream")
    tools = CatalogEntry.objects.filter(connection=connection, kind=CatalogKind.TOOL)
    assert tools.count() == 29  # 25 + whoami, slow, grow, count, served in pages of 10
    assert set(tools.values_list("key", flat=True)) >= {"tool_00", "tool_24", "whoami", "slow"}
    tool = tools.get(key="tool_07")
    assert tool.description == "The tool_07 tool."
    assert tool.definition["inputSchema"]["type"] == "object"
    assert len(tool.definition_hash) == 64
    kinds = dict(
        (kind, CatalogEntry.objects.filter(connection=connection, kind=kind).count())
        for kind in CatalogKind.values
    )
    assert kinds == {"tool": 29, "resource": 1, "resource_template": 1, "prompt": 1}


def test_the_bearer_token_and_extra_headers_reach_the_upstream(org, start_upstream):
    upstream = start_upstream(token="tok-abc")
    target = UpstreamTarget(
        url=upstream.url,
        transport="streamable-http",
        headers={"Authorization": "Bearer tok-abc", "X-Tenant": "acme"},
    )

    async def whoami():
        async with upstream_session(target) as client:
            return await client.call_tool("whoami", {})

    result = anyio.run(whoami)

    seen = json.loads(result.content[0].text)
    assert seen["authorization"] == "Bearer tok-abc"
    assert seen["x-tenant"] == "acme"


def test_the_legacy_sse_transport_works(org, demo_sse_upstream):
    connection = connection_create(
        organization=org, name="Demo SSE", server_url=demo_sse_upstream.url, transport="sse"
    )

    check = connection_check_health(connection=connection)

    assert check.ok, check.error
    connection.refresh_from_db()
    assert connection.protocol_version == "2025-11-25"
    assert set(
        CatalogEntry.objects.filter(connection=connection, kind="tool").values_list(
            "key", flat=True
        )
    ) == {"get_order_status", "check_inventory", "create_quote"}


def test_a_401_from_the_upstream_marks_the_connection_in_error_with_the_reason(org, start_upstream):
    upstream = start_upstream(token="right")
    connection = connection_create(
        organization=org, name="Locked", server_url=upstream.url, auth_type="bearer", token="wrong"
    )

    check = connection_check_health(connection=connection)

    connection.refresh_from_db()
    assert not check.ok
    assert check.error_kind == "unauthorized"
    assert connection.status == "error"
    assert "401" in connection.last_check_error
    assert "token" in connection.last_check_error
    assert "wrong" not in connection.last_check_error


def test_an_unreachable_upstream_is_reported_and_backs_off(org):
    port = free_port()  # nothing listens there
    connection = connection_create(
        organization=org, name="Gone", server_url=f"http://127.0.0.1:{port}/mcp"
    )

    first = connection_check_health(connection=connection)
    first_delay = connection.next_check_at - first.checked_at
    second = connection_check_health(connection=connection)
    second_delay = connection.next_check_at - second.checked_at

    assert first.error_kind == second.error_kind == "unreachable"
    assert f"127.0.0.1:{port}" in first.error
    assert connection.consecutive_failures == 2
    assert second_delay > first_delay


def test_a_silent_upstream_hits_the_timeout_instead_of_hanging(org):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        connection = ConnectionFactory(
            organization=org,
            server_url=f"http://127.0.0.1:{port}/mcp",
            connect_timeout_seconds=1,
            call_timeout_seconds=1,
        )
        check = connection_check_health(connection=connection)
    finally:
        listener.close()

    assert check.error_kind == "timeout"
    assert "did not answer within 1 s" in check.error
    assert check.latency_ms < 10_000


def test_a_slow_tool_call_hits_the_per_call_timeout(start_upstream):
    upstream = start_upstream()
    target = UpstreamTarget(url=upstream.url, transport="streamable-http", call_timeout=1)

    async def call_slow():
        async with upstream_session(target) as client:
            return await client.call_tool("slow", {"seconds": 5})

    with pytest.raises(UpstreamError) as error:
        anyio.run(call_slow)
    assert error.value.kind == "timeout"


def test_only_the_last_checks_are_kept(org, settings):
    from connections import services

    connection = ConnectionFactory(
        organization=org, server_url=f"http://127.0.0.1:{free_port()}/mcp"
    )
    for _ in range(services.HEALTH_HISTORY_KEPT + 3):
        connection_check_health(connection=connection)

    assert HealthCheck.objects.filter(connection=connection).count() == services.HEALTH_HISTORY_KEPT


def snapshot(tools: list[dict]) -> CatalogSnapshot:
    return CatalogSnapshot(
        server_name="s",
        server_version="1",
        protocol_version="2025-11-25",
        instructions="",
        tools=tools,
        resources=[],
        resource_templates=[],
        prompts=[],
    )


def test_a_tool_whose_definition_changes_upstream_is_marked_with_the_old_definition(org):
    connection = ConnectionFactory(organization=org)
    a = {"name": "a", "description": "Adds.", "inputSchema": {"type": "object"}}
    b = {"name": "b", "description": "Bees.", "inputSchema": {"type": "object"}}
    connection_catalog_store(connection=connection, snapshot=snapshot([a, b]))

    changed_a = {**a, "description": "Adds, and also deletes everything."}
    c = {"name": "c", "description": "New.", "inputSchema": {"type": "object"}}
    counts = connection_catalog_store(connection=connection, snapshot=snapshot([changed_a, c]))

    assert counts == {"added": 1, "changed": 1, "missing": 1}
    entries = {e.key: e for e in CatalogEntry.objects.filter(connection=connection)}
    assert entries["a"].state == CatalogState.CHANGED
    assert entries["a"].previous_definition == a
    assert entries["a"].definition == changed_a
    assert entries["b"].state == CatalogState.MISSING
    assert entries["c"].state == CatalogState.OK

    # The same catalog again changes nothing further; b coming back is ok again.
    again = connection_catalog_store(connection=connection, snapshot=snapshot([changed_a, b, c]))
    assert again == {"added": 0, "changed": 0, "missing": 0}
    assert CatalogEntry.objects.get(connection=connection, key="b").state == CatalogState.OK
    assert CatalogEntry.objects.get(connection=connection, key="a").previous_definition == a


def test_the_api_health_check_runs_the_check_and_returns_the_connection(admin, start_upstream):
    upstream = start_upstream()
    connection = ConnectionFactory(organization=admin.organization, server_url=upstream.url)

    response = admin.api().post(f"/api/mcp-connections/{connection.pk}/health-check")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "active"
    assert body["lastHealthCheckAt"] is not None
    assert body["serverName"] == "paged-test-server"
    catalog = admin.api().get(f"/api/mcp-connections/{connection.pk}/catalog").json()
    assert len(catalog["tools"]) == 29
    assert catalog["prompts"][0]["key"] == "summarise"
    assert admin.api().get(f"/api/mcp-connections/{connection.pk}/health-check").status_code == 405


def test_the_health_check_api_is_for_admins_and_scoped_to_the_tenant(member, other_org):
    theirs = ConnectionFactory(organization=other_org)
    mine = ConnectionFactory(organization=member.organization)

    assert member.api().post(f"/api/mcp-connections/{mine.pk}/health-check").status_code == 403
    assert member.api().get(f"/api/mcp-connections/{theirs.pk}/catalog").status_code == 404


def test_check_now_on_the_page_shows_the_catalog_and_history(client, admin, start_upstream):
    upstream = start_upstream(tools=3)
    connection = ConnectionFactory(organization=admin.organization, server_url=upstream.url)
    client.force_login(admin.user)

    response = client.post(f"/connections/{connection.pk}/check", follow=True)

    html = response.content.decode()
    assert "is reachable" in html
    assert "tool_02" in html and "whoami" in html
    assert "Test upstream: use whoami" in html
    assert 'id="history"' in html and "status-active" in html
    assert Connection.objects.get(pk=connection.pk).status == "active"
