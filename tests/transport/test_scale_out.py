"""Two gateway instances behind no sticky routing serve one client correctly."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.helpers import needs_redis

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "alternating", "version": "1"},
    },
}


def _start_session(url: str, token: str) -> dict[str, str]:
    auth = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    response = httpx.post(url, headers=auth, json=INIT)
    assert response.status_code == 200
    return {
        **auth,
        "Mcp-Session-Id": response.headers["mcp-session-id"],
        "MCP-Protocol-Version": "2025-11-25",
    }


def test_a_session_started_on_one_instance_works_on_the_other(live_gateway, served_endpoint, admin):
    served = served_endpoint()
    a, b = live_gateway(), live_gateway()
    headers = _start_session(a.endpoint_url(served.slug), admin.token)

    results = []
    for i, gateway in enumerate([b, a, b, a, b, a]):
        call = {
            "jsonrpc": "2.0",
            "id": 10 + i,
            "method": "tools/call",
            "params": {"name": "paged__tool_00", "arguments": {}},
        }
        response = httpx.post(gateway.endpoint_url(served.slug), headers=headers, json=call)
        results.append((response.status_code, response.json()["result"]["content"][0]["text"]))

    assert results == [(200, "tool_00 ok")] * 6


@needs_redis
def test_delete_on_one_instance_ends_the_session_on_the_other(live_gateway, served_endpoint, admin):
    served = served_endpoint()
    a, b = live_gateway(), live_gateway()
    headers = _start_session(a.endpoint_url(served.slug), admin.token)
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    assert httpx.post(a.endpoint_url(served.slug), headers=headers, json=listing).status_code == 200

    assert httpx.delete(b.endpoint_url(served.slug), headers=headers).status_code == 204
    after = httpx.post(a.endpoint_url(served.slug), headers=headers, json=listing)

    assert after.status_code == 404


@needs_redis
def test_a_toggle_on_one_instance_reaches_a_stream_held_by_the_other(
    live_gateway, served_endpoint, admin
):
    served = served_endpoint()
    a, b = live_gateway(), live_gateway()
    headers = _start_session(a.endpoint_url(served.slug), admin.token)

    async def scenario():
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream(
                "GET",
                b.endpoint_url(served.slug),
                headers={**headers, "Accept": "text/event-stream"},
            ) as stream,
        ):
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            assert (await lines.__anext__()).startswith(":")  # the stream is open
            await asyncio.sleep(0.3)
            toggled = await client.patch(
                f"{a.base}/api/mcp-endpoints/{served.endpoint.pk}/tools",
                headers={"Authorization": f"Bearer {admin.token}"},
                json={
                    "tools": [
                        {
                            "connectionId": str(served.connection.pk),
                            "upstreamName": "tool_09",
                            "enabled": True,
                        }
                    ]
                },
            )
            assert toggled.status_code == 200
            async with asyncio.timeout(10):
                async for line in lines:
                    if line.startswith("data:"):
                        return json.loads(line[5:])
        return None

    notification = asyncio.run(scenario())
    assert notification == {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
