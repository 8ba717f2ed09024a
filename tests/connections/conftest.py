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


# --- third-party peers (tests/peers): skipped, saying why, when Node or the venv is missing ---

PEERS = ROOT / "tests" / "peers"
PEERS_VENV_PYTHON = ROOT / ".cache" / "peers-venv" / "bin" / "python"
EVERYTHING_JS = (
    PEERS / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
)


@dataclass
class Peer:
    """A third-party MCP server on loopback: its URL (or stdio command) and transport."""

    url: str
    transport: str
    port: int = 0
    command: str = ""
    args: tuple[str, ...] = ()

    def calls(self) -> dict[str, int]:
        """How often each tool ran (the FastMCP 1.x peer counts them)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/calls", timeout=5) as answer:
            return json.loads(answer.read())


@pytest.fixture
def start_everything():
    """``start_everything(mode)``: npm @modelcontextprotocol/server-everything in
    ``streamableHttp``, ``sse`` or ``stdio`` mode."""
    import os
    import shutil

    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: cannot run the npm server-everything peer")
    if not EVERYTHING_JS.exists():
        pytest.fail(
            "tests/peers is not installed: run .ci/install-peers (make test does it first)",
            pytrace=False,
        )
    processes: list[subprocess.Popen[bytes]] = []
    # loopback.cjs makes the server bind 127.0.0.1 only.
    command = (node, "--require", str(PEERS / "loopback.cjs"), str(EVERYTHING_JS))

    def start(mode: str) -> Peer:
        if mode == "stdio":
            return Peer(url="", transport="stdio", command=node, args=(*command[1:], "stdio"))
        port = free_port()
        processes.append(
            subprocess.Popen(
                [*command, mode],
                cwd=PEERS,
                env={"PATH": os.environ.get("PATH", ""), "PORT": str(port)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for_port(port)
        path = "/sse" if mode == "sse" else "/mcp"
        transport = "sse" if mode == "sse" else "streamable-http"
        return Peer(url=f"http://127.0.0.1:{port}{path}", transport=transport, port=port)

    yield start
    for process in processes:
        _stop(process)


@pytest.fixture
def start_fastmcp1():
    """``start_fastmcp1(*flags, transport=...)``: a PyPI mcp 1.x FastMCP server
    (tests/peers/python/fastmcp1_server.py) from the peers venv."""
    if not PEERS_VENV_PYTHON.exists():
        pytest.skip("the peers venv is missing: run .ci/install-python-peers (mcp 1.x)")
    processes: list[subprocess.Popen[bytes]] = []

    def start(*flags: str, transport: str = "streamable-http") -> Peer:
        port = free_port()
        processes.append(
            subprocess.Popen(
                [
                    str(PEERS_VENV_PYTHON),
                    str(PEERS / "python" / "fastmcp1_server.py"),
                    str(port),
                    "--transport",
                    transport,
                    *flags,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for_port(port)
        path = "/sse" if transport == "sse" else "/mcp"
        return Peer(url=f"http://127.0.0.1:{port}{path}", transport=transport, port=port)

    yield start
    for process in processes:
        _stop(process)
