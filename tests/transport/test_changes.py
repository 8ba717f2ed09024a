"""Changes reach connected clients: toggles, and upstream list_changed."""

from __future__ import annotations

import asyncio

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def toggle(gateway, admin, served, name: str, enabled: bool) -> None:
    response = httpx.patch(
        f"{gateway.base}/api/mcp-endpoints/{served.endpoint.pk}/tools",
        headers={"Authorization": f"Bearer {admin.token}"},
        json={
            "tools": [
                {
                    "connectionId": str(served.connection.pk),
                    "upstreamName": name,
                    "enabled": enabled,
                }
            ]
        },
    )
    assert response.status_code == 200, response.text


def test_a_toggle_reaches_a_modern_clients_listen_stream(live_gateway, served_endpoint, admin):
    served = served_endpoint()
    gateway = live_gateway()

    async def scenario():
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {admin.token}"}, timeout=30)
        client = Client(
            streamable_http_client(gateway.endpoint_url(served.slug), http_client=http),
            mode="auto",
            cache=None,
        )
        async with http, client:
            before = {tool.name for tool in (await client.list_tools()).tools}
            async with client.listen(tools_list_changed=True) as subscription:
                await asyncio.to_thread(toggle, gateway, admin, served, "tool_07", True)
                event = await asyncio.wait_for(subscription.__anext__(), timeout=10)
            after = {tool.name for tool in (await client.list_tools()).tools}
            return client.protocol_version, before, event, after

    version, before, event, after = asyncio.run(scenario())
    assert version == "2026-07-28"
    assert type(event).__name__ == "ToolsListChanged"
    assert after - before == {"paged__tool_07"}


def test_a_toggle_reaches_a_handshake_clients_stream(live_gateway, served_endpoint, admin):
    served = served_endpoint()
    gateway = live_gateway()

    async def scenario():
        changed = asyncio.Event()

        async def on_message(message):
            if isinstance(message, types.ToolListChangedNotification):
                changed.set()

        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {admin.token}"}, timeout=30)
        client = Client(
            streamable_http_client(gateway.endpoint_url(served.slug), http_client=http),
            mode="legacy",
            cache=None,
            message_handler=on_message,
        )
        async with http, client:
            before = {tool.name for tool in (await client.list_tools()).tools}
            await asyncio.sleep(0.5)  # the GET stream is open
            await asyncio.to_thread(toggle, gateway, admin, served, "tool_01", False)
            await asyncio.wait_for(changed.wait(), timeout=10)
            after = {tool.name for tool in (await client.list_tools()).tools}
            return client.protocol_version, before, after

    version, before, after = asyncio.run(scenario())
    assert version == "2025-11-25"
    assert before - after == {"paged__tool_01"}


@pytest.mark.parametrize("era", ["2026-07-28", "2025-11-25"])
def test_an_upstream_list_changed_refreshes_the_catalog_and_reaches_clients(
    live_gateway, served_endpoint, admin, era
):
    served = served_endpoint(handshake_only=era != "2026-07-28")
    gateway = live_gateway()

    async def scenario():
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {admin.token}"}, timeout=30)
        client = Client(
            streamable_http_client(gateway.endpoint_url(served.slug), http_client=http),
            mode="auto",
            cache=None,
        )
        async with http, client:
            async with client.listen(tools_list_changed=True) as subscription:
                # The pool opens its upstream session (and listen stream) on the first call.
                await client.session.call_tool("paged__tool_00", {})
                await asyncio.sleep(0.5)
                grown = await client.session.call_tool("paged__grow", {})
                event = await asyncio.wait_for(subscription.__anext__(), timeout=15)
            return grown.content[0].text, event

    new_tool, event = asyncio.run(scenario())
    assert type(event).__name__ == "ToolsListChanged"
    from connections.models import CatalogEntry

    entry = CatalogEntry.objects.get(connection=served.connection, key=new_tool)
    assert entry.state == "ok"
