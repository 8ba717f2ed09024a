"""The MCP transport against a live daphne, driven by the SDK's own client."""

from __future__ import annotations

import asyncio
import json

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

SERVED = [
    "paged__grow",
    "paged__slow",
    "paged__tool_00",
    "paged__tool_01",
    "paged__tool_02",
    "paged__whoami",
]


def run(coro):
    return asyncio.run(coro)


async def _session(url: str, token: str, mode: str):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return http, Client(streamable_http_client(url, http_client=http), mode=mode, cache=None)


@pytest.mark.parametrize("mode,version", [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
def test_an_sdk_client_lists_and_calls_the_enabled_tools(
    live_gateway, served_endpoint, admin, mode, version
):
    served = served_endpoint()
    gateway = live_gateway()

    async def scenario():
        http, client = await _session(gateway.endpoint_url(served.slug), admin.token, mode)
        async with http, client:
            tools = await client.list_tools()
            result = await client.session.call_tool("paged__tool_01", {})
            unknown = None
            try:
                await client.session.call_tool("paged__tool_05", {})
            except Exception as error:  # the SDK raises MCPError for a JSON-RPC error
                unknown = error
            return (
                client.protocol_version,
                client.server_info,
                client.instructions,
                tools,
                result,
                unknown,
            )

    protocol, info, instructions, tools, result, unknown = run(scenario())
    assert protocol == version
    assert info.name == "Team tools"
    assert "## Paged" in instructions and "whoami" in instructions
    assert sorted(tool.name for tool in tools.tools) == SERVED
    assert result.content[0].text == "tool_01 ok"
    assert "Unknown tool: paged__tool_05" in str(unknown)


def test_a_legacy_sse_client_is_served(live_gateway, served_endpoint, admin):
    served = served_endpoint()
    gateway = live_gateway()

    async def scenario():
        headers = {"Authorization": f"Bearer {admin.token}"}
        transport = sse_client(gateway.endpoint_url(served.slug) + "/sse", headers=headers)
        async with Client(transport, mode="legacy", cache=None) as client:
            tools = await client.list_tools()
            result = await client.session.call_tool("paged__tool_02", {})
            return tools, result

    tools, result = run(scenario())
    assert sorted(tool.name for tool in tools.tools) == SERVED
    assert result.content[0].text == "tool_02 ok"


def test_it_answers_401_with_a_challenge_without_a_valid_token(live_gateway, served_endpoint):
    served = served_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url(served.slug)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}

    missing = httpx.post(url, json=body)
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer gwt_nope"})

    assert missing.status_code == 401
    challenge = missing.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert (
        f'resource_metadata="{gateway.base}/.well-known/oauth-protected-resource/mcp/team"'
        in challenge
    )
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert "Traceback" not in wrong.text


def test_it_refuses_a_foreign_origin_and_another_tenants_token(
    live_gateway, served_endpoint, admin, other_admin
):
    served = served_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url(served.slug)
    body = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}}
    headers = {"Authorization": f"Bearer {admin.token}", "MCP-Protocol-Version": "2026-07-28"}

    foreign = httpx.post(url, json=body, headers={**headers, "Origin": "https://evil.example"})
    tenant = httpx.post(
        url, json=body, headers={**headers, "Authorization": f"Bearer {other_admin.token}"}
    )
    unknown = httpx.post(gateway.endpoint_url("nope"), json=body, headers=headers)

    assert foreign.status_code == 403
    assert tenant.status_code == 404
    assert unknown.status_code == 404
    assert tenant.json() == unknown.json() | {"error": tenant.json()["error"]}


def test_a_handshake_session_ends_with_delete(live_gateway, served_endpoint, admin):
    served = served_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url(served.slug)
    auth = {
        "Authorization": f"Bearer {admin.token}",
        "Accept": "application/json, text/event-stream",
    }
    init = httpx.post(
        url,
        headers=auth,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
    )
    session = init.headers["mcp-session-id"]
    headers = {**auth, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
    listed = httpx.post(
        url, headers=headers, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    )
    ended = httpx.delete(url, headers=headers)
    after = httpx.post(
        url, headers=headers, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}
    )
    no_session = httpx.post(
        url, headers=auth, json={"jsonrpc": "2.0", "id": 4, "method": "tools/list"}
    )

    assert init.status_code == 200
    assert init.json()["result"]["protocolVersion"] == "2025-06-18"
    assert listed.status_code == 200
    assert len(listed.json()["result"]["tools"]) == len(SERVED)
    assert ended.status_code == 204
    assert after.status_code == 404
    assert no_session.status_code == 400


def test_modern_requests_are_checked_against_their_headers(live_gateway, served_endpoint, admin):
    served = served_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url(served.slug)
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    headers = {"Authorization": f"Bearer {admin.token}", "MCP-Protocol-Version": "2026-07-28"}

    def post(body, **extra):
        return httpx.post(url, json=body, headers={**headers, **extra})

    ok = post(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "paged__tool_00", "_meta": meta},
        },
        **{"Mcp-Method": "tools/call", "Mcp-Name": "paged__tool_00"},
    )
    mismatch = post(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "paged__tool_00", "_meta": meta},
        },
        **{"Mcp-Method": "tools/call", "Mcp-Name": "paged__tool_01"},
    )
    unknown_method = post(
        {"jsonrpc": "2.0", "id": 3, "method": "nope/nope", "params": {"_meta": meta}},
        **{"Mcp-Method": "nope/nope"},
    )
    old_version = post(
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "tools/list",
            "params": {"_meta": {**meta, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}},
        },
        **{"Mcp-Method": "tools/list", "MCP-Protocol-Version": "2099-01-01"},
    )
    listed = post(
        {"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {"_meta": meta}},
        **{"Mcp-Method": "tools/list"},
    )
    no_method_header = post(
        {"jsonrpc": "2.0", "id": 6, "method": "tools/list", "params": {"_meta": meta}}
    )

    assert ok.status_code == 200
    assert ok.json()["result"]["content"] == [{"type": "text", "text": "tool_00 ok"}]
    assert ok.json()["result"]["resultType"] == "complete"
    assert mismatch.status_code == 400
    assert mismatch.json()["error"]["code"] == -32020
    assert unknown_method.status_code == 404
    assert unknown_method.json()["error"]["code"] == -32601
    assert old_version.status_code == 400
    assert old_version.json()["error"]["code"] == -32022
    assert no_method_header.status_code == 400
    assert no_method_header.json()["error"]["code"] == -32020
    assert listed.json()["result"]["cacheScope"] == "private"
    assert listed.json()["result"]["ttlMs"] > 0


def test_an_upstream_failure_names_the_server_and_leaks_nothing(
    live_gateway, served_endpoint, admin
):
    served = served_endpoint()
    gateway = live_gateway()
    # The upstream goes away after the catalog was fetched.
    served.connection.server_url = "http://127.0.0.1:9/mcp"
    served.connection.save()

    async def scenario():
        http, client = await _session(gateway.endpoint_url(served.slug), admin.token, "auto")
        async with http, client:
            return await client.session.call_tool("paged__tool_00", {})

    result = run(scenario())
    assert result.is_error is True
    text = result.content[0].text
    assert text == "The server 'Paged' is unreachable right now."
    assert "127.0.0.1" not in json.dumps(result.model_dump(mode="json"))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_resources_prompts_and_completions_route_to_the_right_server(
    live_gateway, served_endpoint, admin, mode
):
    served = served_endpoint()
    gateway = live_gateway()

    async def scenario():
        http, client = await _session(gateway.endpoint_url(served.slug), admin.token, mode)
        async with http, client:
            resources = await client.list_resources()
            templates = await client.list_resource_templates()
            prompts = await client.list_prompts()
            read = await client.read_resource(resources.resources[0].uri)
            expanded = templates.resource_templates[0].uri_template.replace("{name}", "weekly")
            read_template = await client.read_resource(expanded)
            prompt = await client.get_prompt(prompts.prompts[0].name, {"memo": "Q3"})
            completion = await client.complete(
                types.PromptReference(type="ref/prompt", name=prompts.prompts[0].name),
                {"name": "memo", "value": "al"},
            )
            return resources, templates, prompts, read, read_template, prompt, completion

    resources, _templates, prompts, read, read_template, prompt, completion = run(scenario())
    public_uri = resources.resources[0].uri
    assert public_uri != "memo://readme" and public_uri.endswith("memo://readme")
    assert read.contents[0].text == "memo readme"
    assert str(read.contents[0].uri) == public_uri
    assert read_template.contents[0].text == "memo weekly"
    assert prompts.prompts[0].name == "paged__summarise"
    assert prompt.messages[0].content.text == "Summarise: Q3"
    assert completion.completion.values == ["alpha", "alphabet"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_upstream_progress_is_relayed_and_the_result_is_unchanged(
    live_gateway, served_endpoint, admin, mode
):
    served = served_endpoint(enable=["count"])
    gateway = live_gateway()

    async def scenario():
        seen = []

        async def on_progress(progress, total, message):
            seen.append((progress, total, message))

        http, client = await _session(gateway.endpoint_url(served.slug), admin.token, mode)
        async with http, client:
            result = await client.session.call_tool(
                "paged__count", {}, progress_callback=on_progress
            )
            return result, seen

    result, seen = run(scenario())
    assert result.content[0].text == "counted to 3"
    assert result.structured_content == {"counted": 3}
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


def test_each_endpoint_is_also_served_at_slash_mcp_on_its_own_host(
    live_gateway, served_endpoint, admin
):
    served_endpoint()
    gateway = live_gateway(GATEWAY_ENDPOINT_DOMAIN="mcp.example.test")
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}
    headers = {
        "Authorization": f"Bearer {admin.token}",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "server/discover",
    }

    found = httpx.post(
        f"{gateway.base}/mcp", json=body, headers={**headers, "Host": "team.mcp.example.test"}
    )
    unknown = httpx.post(
        f"{gateway.base}/mcp", json=body, headers={**headers, "Host": "other.mcp.example.test"}
    )
    foreign = httpx.post(f"{gateway.base}/mcp", json=body, headers={**headers, "Host": "evil.test"})

    assert found.status_code == 200, found.text
    assert found.json()["result"]["serverInfo"]["name"] == "Team tools"
    assert unknown.status_code == 404
    assert foreign.status_code == 400
