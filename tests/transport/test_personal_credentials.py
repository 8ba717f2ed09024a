"""Personal credentials through a live gateway: each user's calls reach the upstream with
their own token, a user without one is told where to add it, and a change takes effect
at once (no wait for the cached target to expire)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from audit.models import AuditRecord
from connections import credentials
from connections.models import CatalogEntry, CatalogKind
from connections.services import connection_check_health, connection_create
from endpoints.services import endpoint_create, endpoint_entries_set_enabled

ALICE_TOKEN = "alice-upstream-token-1111"
BOB_TOKEN = "bob-upstream-token-2222"


async def call_tool(url: str, api_token: str, name: str) -> tuple[bool, str]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {api_token}"}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), cache=None) as client,
    ):
        result = await client.session.call_tool(name, {})
    content = result.content[0]
    assert isinstance(content, types.TextContent)
    return bool(result.is_error), content.text


def test_each_user_reaches_a_personal_server_with_their_own_token(
    live_gateway, start_upstream, admin, member
):
    upstream = start_upstream(tools=3)
    connection = connection_create(
        organization=admin.organization,
        name="Paged",
        slug="paged",
        server_url=upstream.url,
        auth_type="bearer",
        credential_mode="personal",
    )
    credentials.personal_token_set(connection=connection, user=admin.user, token=ALICE_TOKEN)
    check = connection_check_health(connection=connection, user=admin.user)
    assert check.ok, check.error
    endpoint = endpoint_create(
        organization=admin.organization, name="Team", slug="team", connection_ids=[connection.pk]
    )
    whoami = CatalogEntry.objects.get(connection=connection, kind=CatalogKind.TOOL, key="whoami")
    endpoint_entries_set_enabled(endpoint=endpoint, entry_ids=[whoami.pk], enabled=True)
    gateway = live_gateway()
    url = gateway.endpoint_url("team")

    alice_error, alice_seen = asyncio.run(call_tool(url, admin.token, "paged__whoami"))
    assert not alice_error
    assert json.loads(alice_seen)["authorization"] == f"Bearer {ALICE_TOKEN}"

    # bob has none: a tool error that names the page where he adds it.
    bob_error, bob_text = asyncio.run(call_tool(url, member.token, "paged__whoami"))
    assert bob_error
    assert "needs your own credential" in bob_text
    assert f"{gateway.base}/me/connections" in bob_text

    # He adds it through the gateway's API; his very next call uses it.
    api = httpx.Client(base_url=gateway.base, headers={"Authorization": f"Bearer {member.token}"})
    me = f"/api/mcp-connections/{connection.pk}/credentials/me"
    response = api.put(me, json={"token": BOB_TOKEN})
    assert response.status_code == 200, response.text
    bob_error, bob_seen = asyncio.run(call_tool(url, member.token, "paged__whoami"))
    assert not bob_error, bob_seen
    assert json.loads(bob_seen)["authorization"] == f"Bearer {BOB_TOKEN}"
    # alice's calls still carry hers; the client's gateway token never reaches the upstream.
    _, alice_again = asyncio.run(call_tool(url, admin.token, "paged__whoami"))
    assert json.loads(alice_again)["authorization"] == f"Bearer {ALICE_TOKEN}"
    assert admin.token not in alice_again and member.token not in bob_seen

    # Disconnecting takes effect at once too.
    assert api.delete(me).status_code == 204
    bob_error, bob_text = asyncio.run(call_tool(url, member.token, "paged__whoami"))
    assert bob_error and "/me/connections" in bob_text

    # The activity log recorded the calls with the tokens redacted.
    deadline = time.monotonic() + 10
    while AuditRecord.objects.filter(method="tools/call").count() < 5:
        assert time.monotonic() < deadline, "the calls were not recorded"
        time.sleep(0.2)
    for record in AuditRecord.objects.all():
        text = f"{record.arguments} {record.result} {record.error_message}"
        assert ALICE_TOKEN not in text and BOB_TOKEN not in text
    assert AuditRecord.objects.filter(secrets_redacted=True, username="bob").exists()
