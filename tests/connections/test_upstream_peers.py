"""Calls through the pool — the path every client call takes (the lean path on Streamable
HTTP, the SDK session on legacy SSE and stdio) — against MCP servers no one here wrote:
the npm ``@modelcontextprotocol/server-everything`` (a TypeScript server with an event
store: every answer stream starts with a priming event) in its three modes, and a PyPI
``mcp`` 1.x FastMCP server (stateful by default: it refuses the SDK's ``server/discover``
probe with a session id it forgets) in each of its modes. Skipped, saying why, when Node
or the peers venv is missing."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from typing import Any

import pytest

from connections.models import Connection
from connections.pool import UpstreamPool
from connections.services import connection_check_health, connection_create
from connections.upstream import UpstreamError, UpstreamTarget
from tests.connections.conftest import PEERS as PEERS_DIR
from tests.connections.conftest import Peer, _stop
from tests.helpers import free_port, wait_for_port

BIG = 1_500_000  # over the 1 MiB per-event cap of the SDK's SSE readers

PEERS = [
    pytest.param(("everything", "streamableHttp"), id="everything-streamable-http"),
    pytest.param(("everything", "sse"), id="everything-sse"),
    pytest.param(("everything", "stdio"), id="everything-stdio"),
    pytest.param(("fastmcp1", ()), id="fastmcp1-stateful"),
    pytest.param(("fastmcp1", ("--stateless",)), id="fastmcp1-stateless"),
    pytest.param(("fastmcp1", ("--json",)), id="fastmcp1-json"),
    pytest.param(("fastmcp1", ("sse",)), id="fastmcp1-sse"),
]


@pytest.fixture
def peer(request, start_everything, start_fastmcp1) -> Peer:
    kind, how = request.param
    if kind == "everything":
        return start_everything(how)
    if how == ("sse",):
        return start_fastmcp1(transport="sse")
    return start_fastmcp1(*how)


def target_of(peer: Peer) -> UpstreamTarget:
    return UpstreamTarget(
        url=peer.url,
        transport=peer.transport,
        command=peer.command,
        args=peer.args,
        call_timeout=30.0,
        connect_timeout=20.0,
    )


def text_of(result: dict[str, Any]) -> str:
    return result["content"][0]["text"]


@pytest.mark.parametrize("peer", PEERS, indirect=True)
def test_calls_progress_and_answers_over_a_mebibyte_come_back_from_every_peer(peer, request):
    everything = request.node.callspec.id.startswith("everything")
    lean = peer.transport == "streamable-http"

    async def scenario():
        pool = UpstreamPool()
        target = target_of(peer)
        progress: list[tuple[float, float | None]] = []
        notes: list[str] = []

        async def on_progress(value, total, message):
            progress.append((value, total))

        async def on_notification(message):
            notes.append(message.get("method"))

        async def tool(name: str, arguments: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            return await pool.call_tool(
                connection_id="c", target=target, name=name, arguments=arguments, **kwargs
            )

        if everything:
            small = await tool("echo", {"message": "hello"})
            large = await tool("echo", {"message": "y" * BIG})
            steps = await tool(
                "trigger-long-running-operation",
                {"duration": 0.3, "steps": 3},
                progress=on_progress,
            )
        else:
            small = await tool("echo", {"text": "hello"})
            large = await tool("big", {"size": BIG})
            steps = await tool(
                "steps", {"count": 3}, progress=on_progress, on_notification=on_notification
            )
        again = await asyncio.gather(
            *(tool("echo", {"message" if everything else "text": f"n{i}"}) for i in range(5))
        )
        session = next(iter(pool._sessions.values()))
        used_lean = session.channel is not None
        stats = pool.stats()
        await pool.aclose()
        return small, large, steps, again, progress, notes, used_lean, stats

    small, large, steps, again, progress, notes, used_lean, stats = asyncio.run(scenario())
    assert used_lean == lean
    assert stats["opened"] == 1
    if everything:
        assert text_of(small) == "Echo: hello"
        assert text_of(large) == "Echo: " + "y" * BIG
        assert "Steps: 3" in text_of(steps)
        assert [text_of(r) for r in again] == [f"Echo: n{i}" for i in range(5)]
    else:
        assert text_of(small) == "hello"
        assert text_of(large) == "x" * BIG
        assert text_of(steps) == "done 3"
        assert [text_of(r) for r in again] == [f"n{i}" for i in range(5)]
        # Each call ran exactly once upstream.
        assert peer.calls() == {"echo": 6, "big": 1, "steps": 1}
        if lean and "json" not in request.node.callspec.id:
            # Logs sent on the call's stream reach the call's notification hook.
            assert notes == ["notifications/message"] * 3
    if request.node.callspec.id.endswith("json"):
        assert progress == []  # a JSON answer cannot carry progress
    else:
        assert progress == [(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)]


HEALTH = [
    pytest.param(("everything", "streamableHttp"), id="everything-streamable-http"),
    pytest.param(("everything", "sse"), id="everything-sse"),
    pytest.param(("fastmcp1", ()), id="fastmcp1-stateful"),
    pytest.param(("fastmcp1", ("sse",)), id="fastmcp1-sse"),
]


@pytest.mark.parametrize("peer", HEALTH, indirect=True)
def test_a_health_check_shows_a_peer_whose_calls_work_as_active(org, peer):
    connection = connection_create(
        organization=org, name="Peer", server_url=peer.url, transport=peer.transport
    )

    check = connection_check_health(connection=connection)

    assert check.ok, (check.error, check.detail)
    connection.refresh_from_db()
    assert connection.status == "active"
    assert Connection.objects.get(pk=connection.pk).last_check_error == ""


@pytest.mark.parametrize(
    "transport", ["streamable-http", "sse"], ids=["lean-path", "legacy-sse-sdk-path"]
)
def test_a_call_whose_server_dies_mid_call_fails_and_is_never_sent_again(
    start_fastmcp1, tmp_path, transport
):
    calls_file = tmp_path / "calls.txt"
    peer = start_fastmcp1("--calls-file", str(calls_file), transport=transport)

    async def scenario():
        pool = UpstreamPool()
        target = target_of(peer)
        first = await pool.call_tool(
            connection_id="c", target=target, name="echo", arguments={"text": "up"}
        )
        with pytest.raises(UpstreamError) as caught:
            await pool.call_tool(connection_id="c", target=target, name="crash", arguments={})
        await pool.aclose()
        return first, caught.value

    first, error = asyncio.run(scenario())
    assert text_of(first) == "up"
    assert calls_file.read_text().split() == ["echo", "crash"]  # crash ran once, not twice
    assert error.kind == "interrupted", (error.kind, error.message, error.detail)
    assert "not sent again" in error.message


class CuttingProxy:
    """A loopback TCP proxy that cuts the connection carrying the request that names
    ``marker`` once the server's first progress notification has passed through it."""

    def __init__(self, upstream_port: int, marker: bytes) -> None:
        self.upstream_port, self.marker = upstream_port, marker
        self.cuts = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def __aexit__(self, *exc_info: object) -> None:
        self.server.close()

    async def _serve(self, client_reader, client_writer) -> None:
        server_reader, server_writer = await asyncio.open_connection(
            "127.0.0.1", self.upstream_port
        )
        marked = asyncio.Event()

        async def upstream() -> None:
            while data := await client_reader.read(65536):
                self.requests.append(data)
                if self.marker in data and not self.cuts:
                    marked.set()
                server_writer.write(data)
                await server_writer.drain()

        async def downstream() -> None:
            while data := await server_reader.read(65536):
                client_writer.write(data)
                await client_writer.drain()
                if marked.is_set() and b"notifications/progress" in data:
                    self.cuts += 1
                    return  # cut: the answer's stream drops mid-call

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for writer in (client_writer, server_writer):
            writer.close()


@pytest.fixture
def resumable_peer():
    """A TypeScript-SDK McpServer with the SDK's InMemoryEventStore (tests/peers/ts)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: cannot run the TypeScript SDK peer")
    if not (PEERS_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").exists():
        pytest.fail(
            "tests/peers is not installed: run .ci/install-peers (make test does it first)",
            pytrace=False,
        )
    port = free_port()
    process = subprocess.Popen(
        [node, str(PEERS_DIR / "ts" / "resumable_server.cjs"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield Peer(url=f"http://127.0.0.1:{port}/mcp", transport="streamable-http", port=port)
    finally:
        _stop(process)


def test_a_stream_cut_mid_call_is_resumed_from_the_typescript_sdks_event_store(resumable_peer):
    # (server-everything's own event store answers a resume with the wrong stream id, so
    # nothing after the cut ever reaches the resumed stream: the SDK's store is used here.)
    async def scenario():
        proxy = CuttingProxy(resumable_peer.port, b'"slow"')
        async with proxy as port:
            pool = UpstreamPool()
            target = target_of(
                Peer(url=f"http://127.0.0.1:{port}/mcp", transport="streamable-http")
            )
            progress: list[float] = []

            async def on_progress(value, total, message):
                progress.append(value)

            result = await pool.call_tool(
                connection_id="c",
                target=target,
                name="slow",
                arguments={"steps": 4},
                progress=on_progress,
            )
            resumed = next(iter(pool._sessions.values())).channel.resumed
            await pool.aclose()
        return proxy, result, progress, resumed

    proxy, result, progress, resumed = asyncio.run(scenario())
    assert proxy.cuts == 1
    assert resumed == 1
    assert text_of(result) == "done 4"
    assert progress == [1.0, 2.0, 3.0, 4.0]
    # Sent once; the rest of its stream came through a GET carrying Last-Event-ID.
    sent = b"".join(proxy.requests)
    assert sent.count(b'"slow"') == 1
    assert b"last-event-id:" in sent.lower()


SDK_PATH_PEERS = [
    pytest.param(("everything", "stdio"), id="everything-stdio"),
    pytest.param(("everything", "sse"), id="everything-sse"),
    pytest.param(("fastmcp1", ("sse",)), id="fastmcp1-sse"),
]


@pytest.mark.parametrize("peer", SDK_PATH_PEERS, indirect=True)
def test_every_progress_notification_is_handled_before_the_answer_on_the_sdk_path(peer, request):
    """The SDK runs progress callbacks in tasks of their own: a callback that is still
    relaying the last step (to a client stream on another instance, say) when the
    answer arrives must finish first, or the client gets the result before the step
    and drops it."""
    everything = request.node.callspec.id.startswith("everything")

    async def scenario():
        pool = UpstreamPool()
        relayed: list[float] = []

        async def slow_relay(value, total, message):
            await asyncio.sleep(0.05)
            relayed.append(value)

        if everything:
            name, arguments = "trigger-long-running-operation", {"duration": 0.3, "steps": 3}
        else:
            name, arguments = "steps", {"count": 3}
        await pool.call_tool(
            connection_id="c",
            target=target_of(peer),
            name=name,
            arguments=arguments,
            progress=slow_relay,
        )
        seen_at_answer = list(relayed)
        await pool.aclose()
        return seen_at_answer

    assert asyncio.run(scenario()) == [1.0, 2.0, 3.0]
