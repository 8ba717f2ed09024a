"""Helpers for tests that start real processes on loopback."""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from urllib.error import URLError

import httpx
import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def wait_for_http(url: str, timeout: float = 60.0) -> int:
    """Poll a loopback URL until it answers; return its status."""
    assert url.startswith("http://127.0.0.1:")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return int(response.status)
        except URLError:
            time.sleep(0.2)
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def mcp_handshake(url: str, token: str, *, version: str = "2025-11-25") -> dict[str, str]:
    """Open a handshake-era MCP session on a loopback endpoint with raw HTTP.

    Returns the headers every later request of the session sends (bearer, Accept of
    both media types, ``Mcp-Session-Id``, ``MCP-Protocol-Version``).
    """
    assert url.startswith("http://127.0.0.1:")
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    initialize = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "raw-test-client", "version": "1"},
        },
    }
    response = httpx.post(url, headers=headers, json=initialize, timeout=30)
    assert response.status_code == 200, response.text
    session = {
        **headers,
        "Mcp-Session-Id": response.headers["mcp-session-id"],
        "MCP-Protocol-Version": version,
    }
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert httpx.post(url, headers=session, json=initialized, timeout=30).status_code == 202
    return session


# Two gateway instances reach each other's streams only through a shared channel layer.
needs_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"),
    reason="instances share streams and events through Redis: run with REDIS_URL (CI does)",
)
