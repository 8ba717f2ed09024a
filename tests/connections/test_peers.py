"""The gateway against a third-party MCP server no one here wrote: the npm package
``@modelcontextprotocol/server-everything`` (pinned in tests/peers/package-lock.json,
installed by ``.ci/install-peers``), in its Streamable HTTP and legacy SSE modes."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import anyio
import pytest
from mcp_types import TextContent

from connections.models import CatalogEntry, CatalogKind, Connection
from connections.services import connection_check_health, connection_create, upstream_target_for
from connections.upstream import upstream_session
from tests.helpers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "tests" / "peers"
EVERYTHING = PEERS / "node_modules" / "@modelcontextprotocol" / "server-everything"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None, reason="Node.js is not installed: cannot run the npm server-everything peer"
)

# (its mode argument, the path it serves MCP on, our transport)
MODES = [
    pytest.param(("streamableHttp", "/mcp", "streamable-http"), id="streamable-http"),
    pytest.param(("sse", "/sse", "sse"), id="sse"),
]


@dataclass
class Peer:
    url: str
    transport: str


@pytest.fixture
def everything(request) -> Iterator[Peer]:
    mode, path, transport = request.param
    if not (EVERYTHING / "dist" / "index.js").exists():
        pytest.fail(
            "tests/peers is not installed: run .ci/install-peers (make test does it first)",
            pytrace=False,
        )
    assert NODE is not None
    port = free_port()
    process = subprocess.Popen(
        # loopback.cjs makes the server bind 127.0.0.1 only (it would listen on every interface).
        [
            NODE,
            "--require",
            str(PEERS / "loopback.cjs"),
            str(EVERYTHING / "dist" / "index.js"),
            mode,
        ],
        cwd=PEERS,
        env={"PATH": os.environ.get("PATH", ""), "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield Peer(url=f"http://127.0.0.1:{port}{path}", transport=transport)
    finally:
        process.terminate()
        process.wait(timeout=10)


def keys(connection: Connection, kind: str) -> list[str]:
    return list(
        CatalogEntry.objects.filter(connection=connection, kind=kind)
        .order_by("position")
        .values_list("key", flat=True)
    )


@pytest.mark.parametrize("everything", MODES, indirect=True)
def test_a_check_of_server_everything_stores_its_whole_catalog(org, everything):
    connection = connection_create(
        organization=org,
        name="Everything",
        server_url=everything.url,
        transport=everything.transport,
    )

    check = connection_check_health(connection=connection)

    assert check.ok, check.error
    connection.refresh_from_db()
    assert connection.status == "active"
    assert connection.server_name == "mcp-servers/everything"
    assert connection.protocol_version == "2025-11-25"
    assert connection.server_instructions  # it ships a long instructions.md
    tools = keys(connection, CatalogKind.TOOL)
    assert {
        "echo",
        "get-sum",
        "get-env",
        "get-tiny-image",
        "trigger-long-running-operation",
    } <= set(tools)
    assert len(tools) == 13
    echo = CatalogEntry.objects.get(connection=connection, kind=CatalogKind.TOOL, key="echo")
    assert echo.title == "Echo Tool"
    assert echo.description == "Echoes back the input string"
    assert echo.definition["inputSchema"]["properties"]["message"]["type"] == "string"
    assert echo.definition["inputSchema"]["required"] == ["message"]
    assert echo.definition["annotations"]["readOnlyHint"] is True
    get_sum = CatalogEntry.objects.get(connection=connection, kind=CatalogKind.TOOL, key="get-sum")
    assert set(get_sum.definition["inputSchema"]["properties"]) == {"a", "b"}
    resources = keys(connection, CatalogKind.RESOURCE)
    assert len(resources) == 7
    assert "demo://resource/static/document/architecture.md" in resources
    assert keys(connection, CatalogKind.RESOURCE_TEMPLATE) == [
        "demo://resource/dynamic/text/{resourceId}",
        "demo://resource/dynamic/blob/{resourceId}",
    ]
    assert keys(connection, CatalogKind.PROMPT) == [
        "simple-prompt",
        "args-prompt",
        "completable-prompt",
        "resource-prompt",
    ]


@pytest.mark.parametrize("everything", MODES, indirect=True)
def test_tool_calls_reach_server_everything_and_come_back(org, everything):
    connection = connection_create(
        organization=org,
        name="Everything",
        server_url=everything.url,
        transport=everything.transport,
    )
    target = upstream_target_for(connection=connection)

    async def call() -> tuple[str, str]:
        async with upstream_session(target) as client:
            echo = await client.call_tool("echo", {"message": "hello from the gateway"})
            total = await client.call_tool("get-sum", {"a": 2, "b": 40})
        texts = [result.content[0] for result in (echo, total)]
        assert all(isinstance(text, TextContent) for text in texts), texts
        return cast(TextContent, texts[0]).text, cast(TextContent, texts[1]).text

    echoed, summed = anyio.run(call)

    assert echoed == "Echo: hello from the gateway"
    assert summed == "The sum of 2 and 40 is 42."
