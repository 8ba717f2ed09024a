"""Real upstream MCP servers on loopback, started per test."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunningUpstream:
    url: str
    port: int

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as response:
            return json.loads(response.read())


def _start(args: list[str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
    except TimeoutError:
        process.kill()
        raise
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server; one still holding a client's open stream is killed after 5 s."""
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture
def start_upstream():
    """Start the paged SDK test server: ``start_upstream(token=..., tools=...)``."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(
        *, token: str | None = None, tools: int = 25, handshake_only: bool = False
    ) -> RunningUpstream:
        port = free_port()
        args = ["tests.upstreams.paged_server", str(port), "--tools", str(tools)]
        if token:
            args += ["--token", token]
        if handshake_only:
            args.append("--handshake-only")
        processes.append(_start(args, port))
        return RunningUpstream(url=f"http://127.0.0.1:{port}/mcp", port=port)

    yield start
    for process in processes:
        _stop(process)


@dataclass
class OAuthUpstream:
    """The OAuth-protected test server (tests/upstreams/oauth_server.py) and its controls."""

    base: str
    port: int

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def calls(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.base}/control/calls", timeout=5) as response:
            return json.loads(response.read())

    def events(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.base}/control/events", timeout=5) as response:
            return json.loads(response.read())

    def control(self, action: str, subject: str) -> dict:
        request = urllib.request.Request(
            f"{self.base}/control/{action}?subject={subject}", method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())


@pytest.fixture
def start_oauth_upstream():
    """Start the OAuth-protected test server: ``start_oauth_upstream("--cimd", ...)``."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(*flags: str) -> OAuthUpstream:
        port = free_port()
        processes.append(_start(["tests.upstreams.oauth_server", str(port), *flags], port))
        return OAuthUpstream(base=f"http://127.0.0.1:{port}", port=port)

    yield start
    for process in processes:
        _stop(process)


@pytest.fixture
def demo_sse_upstream():
    """The demo server over legacy HTTP+SSE (2024-11-05 transport)."""
    port = free_port()
    process = _start(["connections.demo.upstream", "sse", str(port)], port)
    yield RunningUpstream(url=f"http://127.0.0.1:{port}/sse", port=port)
    process.terminate()
    process.wait(timeout=10)
