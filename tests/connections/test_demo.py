"""The demo: a real MCP server, registered by load_demo, started by make run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import anyio
import httpx
import pytest
from django.core.management import call_command
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from connections.models import Connection
from endpoints.models import Endpoint
from endpoints.selectors import endpoint_served
from oauth.models import Membership, Organization, Role
from oauth.services import user_ensure_admin
from tests.helpers import free_port, wait_for_http, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_upstream():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "connections.demo.upstream", "streamable-http", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_demo_upstream_is_a_real_mcp_server(demo_upstream):
    async def session():
        async with Client(streamable_http_client(demo_upstream)) as client:
            tools = await client.list_tools()
            result = await client.call_tool("get_order_status", {"order_id": "ORD-1001"})
            missing = await client.call_tool("get_order_status", {"order_id": "ORD-9"})
            return client.server_info, tools, result, missing

    info, tools, result, missing = anyio.run(session)

    assert info.name == "acme-orders"
    assert {t.name for t in tools.tools} >= {"get_order_status", "check_inventory", "create_quote"}
    assert result.is_error is False
    assert result.structured_content["status"] == "shipped"
    assert missing.is_error is True


def test_ensure_admin_creates_the_account_once_and_prints_the_password_once(db, settings):
    settings.GATEWAY_DEMO = False
    settings.GATEWAY_ADMIN_PASSWORD = ""
    first, second = StringIO(), StringIO()

    call_command("ensure_admin", stdout=first)
    call_command("ensure_admin", stdout=second)

    assert "with the password:" in first.getvalue()
    assert second.getvalue() == ""
    organization = Organization.objects.get()
    assert Membership.objects.get(organization=organization).role == Role.ADMIN


def test_ensure_admin_uses_the_configured_password(db, settings, client):
    settings.GATEWAY_ADMIN_USERNAME = "root-admin"
    settings.GATEWAY_ADMIN_PASSWORD = "a-chosen-password-1"

    out = StringIO()
    call_command("ensure_admin", stdout=out)

    assert "password" not in out.getvalue()
    assert client.login(username="root-admin", password="a-chosen-password-1")


def test_load_demo_registers_the_demo_connection_idempotently(db, settings):
    settings.GATEWAY_DEMO_PORT = 9911
    user_ensure_admin(username="admin", password="pw-123456789")

    call_command("load_demo", stdout=StringIO())
    call_command("load_demo", stdout=StringIO())

    connection = Connection.objects.get()
    assert connection.organization.slug == "demo"
    assert connection.server_url == "http://127.0.0.1:9911/mcp"
    assert connection.status == "unknown"
    endpoint = Endpoint.objects.get()
    served = endpoint_served(endpoint=endpoint)
    assert endpoint.slug == "acme-support-demo"
    assert sorted(tool.name for tool in served.tools) == [
        "acme-orders__check_inventory",
        "acme-orders__create_quote",
        "acme-orders__get_order_status",
    ]
    assert [prompt.name for prompt in served.prompts] == ["acme-orders__customer_reply"]


def _call_demo_tool(url: str, token: str) -> str:
    """Through the demo endpoint, as an AI client would: initialize, then tools/call."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    init = httpx.post(
        url,
        headers=headers,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        },
        timeout=30,
    )
    headers["Mcp-Session-Id"] = init.headers["mcp-session-id"]
    call = httpx.post(
        url,
        headers=headers,
        json={
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {
                "name": "acme-orders__get_order_status",
                "arguments": {"order_id": "ORD-1001"},
            },
        },
        timeout=30,
    )
    return call.text


def test_make_run_starts_everything_and_ctrl_c_stops_it(tmp_path):
    """What `make run` runs, end to end: the web server answers, the demo is loaded,
    and SIGINT stops daphne, the Celery worker and the demo upstream."""
    web, demo = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GATEWAY_", "DATABASE_URL", "REDIS_URL", "DJANGO_"))
    }
    env.update(
        {
            "GATEWAY_DATA_DIR": str(tmp_path / "data"),
            "PORT": str(web),
            "GATEWAY_DEMO_PORT": str(demo),
            "GATEWAY_ADMIN_PASSWORD": "demo-password-123",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway_project.run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_for_http(f"http://127.0.0.1:{web}/accounts/login/", timeout=90) == 200
        wait_for_port(demo)
        token = subprocess.run(
            [sys.executable, "manage.py", "create_api_token", "admin", "--org", "demo"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        answer = _call_demo_tool(f"http://127.0.0.1:{web}/mcp/acme-support-demo", token)
        # The activity log's writer process stores the call's record.
        logged: list[dict] = []
        deadline = time.monotonic() + 20
        while not logged and time.monotonic() < deadline:
            time.sleep(0.25)
            logged = httpx.get(
                f"http://127.0.0.1:{web}/api/audit-logs",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            ).json()["records"]
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output[-3000:]
    assert "MCP gateway: http://127.0.0.1:" in output
    assert "Acme orders" in output
    assert "Stopping" in output
    assert "ORD-1001" in answer and "shipped" in answer.lower()
    assert [r["name"] for r in logged] == ["acme-orders__get_order_status"], logged
    stored = re.search(r"Activity log writer: stopped after storing (\d+) records", output)
    assert stored and int(stored.group(1)) >= 1, output[-3000:]
    for port in (web, demo):
        with pytest.raises(TimeoutError):
            wait_for_port(port, timeout=0.5)
