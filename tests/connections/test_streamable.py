"""The pool's lean request path on Streamable HTTP sessions (``connections/streamable.py``),
against real upstreams on loopback: the SDK test server (answers in SSE, both eras) and the
benchmark upstream (answers in JSON, or SSE with ``--sse``)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from connections import outbound
from connections.pool import UpstreamCallError, UpstreamPool
from connections.streamable import StreamableChannel
from connections.upstream import UpstreamError, UpstreamTarget
from tests.connections.conftest import _start, _stop
from tests.helpers import free_port

BENCH_UPSTREAM = Path(__file__).resolve().parents[2] / "benchmarks" / "upstream.py"


def target(url: str, **kwargs) -> UpstreamTarget:
    return UpstreamTarget(url=url, transport="streamable-http", **kwargs)


def text_of(result: dict) -> str:
    return result["content"][0]["text"]


def channel_of(pool: UpstreamPool) -> StreamableChannel:
    (session,) = pool._sessions.values()
    assert session.channel is not None, "the call did not go through the lean channel"
    return session.channel


@pytest.fixture
def bench_upstream():
    """The benchmark upstream: ``bench_upstream(*flags)`` -> its base URL."""
    children: list[subprocess.Popen[bytes]] = []

    def start(*flags: str) -> str:
        child = subprocess.Popen(
            [sys.executable, str(BENCH_UPSTREAM), "--port", "0", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        children.append(child)
        assert child.stdout is not None
        return f"http://127.0.0.1:{json.loads(child.stdout.readline())['port']}"

    yield start
    for child in children:
        child.terminate()
        child.wait(timeout=10)


@pytest.mark.parametrize("era", ["2026-07-28", "2025-11-25"])
def test_calls_go_over_kept_alive_connections_with_the_credential_and_sessions_headers(
    start_upstream, era
):
    upstream = start_upstream(token="tok-1", handshake_only=era != "2026-07-28")

    async def scenario():
        pool = UpstreamPool()
        t = target(upstream.url, headers={"Authorization": "Bearer tok-1", "X-Tenant": "acme"})
        seen = await pool.call_tool(connection_id="c", target=t, name="whoami", arguments={})
        results = [
            await pool.call_tool(connection_id="c", target=t, name="tool_03", arguments={})
            for _ in range(30)
        ]
        channel = channel_of(pool)
        version = next(iter(pool._sessions.values())).client.protocol_version
        opened = channel.connections_opened
        await pool.aclose()
        return json.loads(text_of(seen)), results, version, opened

    seen, results, version, opened = asyncio.run(scenario())
    assert version == era
    assert seen == {"authorization": "Bearer tok-1", "x-tenant": "acme"}
    assert [text_of(r) for r in results] == ["tool_03 ok"] * 30
    # SSE answers are read to their end in the background before the connection is
    # reused, so a call may overlap that and open a second one: never one per call.
    assert opened <= 3
    stats = upstream.stats()
    assert stats["initialize"] == 1  # one session (initialize or server/discover), kept


@pytest.mark.parametrize("flags", [(), ("--sse",)], ids=["json", "sse"])
def test_json_and_sse_answers_come_back_unchanged(bench_upstream, flags):
    base = bench_upstream(*flags)

    async def scenario():
        pool = UpstreamPool()
        t = target(f"{base}/mcp/p0")
        results = await asyncio.gather(
            *(
                pool.call_tool(
                    connection_id="c", target=t, name="tool_1", arguments={"text": f"hi {i}"}
                )
                for i in range(40)
            )
        )
        opened = channel_of(pool).connections_opened
        await pool.aclose()
        return results, opened

    results, opened = asyncio.run(scenario())
    assert [text_of(r) for r in results] == [f"tool_1: hi {i}" for i in range(40)]
    assert opened <= 32  # the pool's concurrency bound: one connection per call in flight


def test_resources_prompts_completions_and_errors_take_the_lean_path(start_upstream):
    upstream = start_upstream()

    async def scenario():
        pool = UpstreamPool()
        t = target(upstream.url)
        kwargs = {"connection_id": "c", "target": t}
        read = await pool.read_resource(**kwargs, uri="memo://x")
        prompt = await pool.get_prompt(**kwargs, name="summarise", arguments={"memo": "m"})
        completion = await pool.complete(
            **kwargs,
            params={
                "ref": {"type": "ref/resource", "uri": "memo://{name}"},
                "argument": {"name": "name", "value": "alp"},
            },
        )
        channel_of(pool)
        with pytest.raises(UpstreamCallError) as missing:
            await pool.read_resource(**kwargs, uri="memo://nothing-here")
        await pool.aclose()
        return read, prompt, completion, missing.value

    read, prompt, completion, missing = asyncio.run(scenario())
    assert read["contents"][0]["text"] == "memo x"
    assert prompt["messages"][0]["content"]["text"] == "Summarise: m"
    assert completion["completion"]["values"] == ["alpha", "alphabet"]
    assert missing.code == -32602
    assert "nothing-here" in missing.message


def test_progress_reaches_the_callback_before_the_result(start_upstream):
    upstream = start_upstream()

    async def scenario():
        pool = UpstreamPool()
        seen: list[tuple[float, float | None, str | None]] = []

        async def progress(value, total, message):
            seen.append((value, total, message))

        result = await pool.call_tool(
            connection_id="c",
            target=target(upstream.url),
            name="count",
            arguments={},
            progress=progress,
        )
        channel_of(pool)
        await pool.aclose()
        return result, seen

    result, seen = asyncio.run(scenario())
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
    assert result["structuredContent"] == {"counted": 3}


@pytest.mark.parametrize("era", ["2025-11-25", "2026-07-28"])
def test_a_restarted_upstream_is_reached_again_on_a_new_connection(era):
    port = free_port()
    args = ["tests.upstreams.paged_server", str(port)]
    if era != "2026-07-28":
        args.append("--handshake-only")
    process = _start(args, port)
    try:

        async def scenario():
            nonlocal process
            pool = UpstreamPool()
            t = target(f"http://127.0.0.1:{port}/mcp")
            first = await pool.call_tool(connection_id="c", target=t, name="tool_01", arguments={})
            # The kept-alive connection dies with the process.
            await asyncio.to_thread(_stop, process)
            process = await asyncio.to_thread(_start, args, port)
            second = await pool.call_tool(connection_id="c", target=t, name="tool_01", arguments={})
            stats = pool.stats()
            await pool.aclose()
            return first, second, stats

        first, second, stats = asyncio.run(scenario())
    finally:
        _stop(process)
    assert text_of(first) == text_of(second) == "tool_01 ok"
    # Handshake era: the new process does not know our session id (404), so the pool
    # opens exactly one new session and sends the call again. In 2026-07-28 there is
    # no session id; the SDK's listen stream may end the old session with the process.
    if era == "2025-11-25":
        assert stats["opened"] == 2
    else:
        assert stats["opened"] in (1, 2)


@pytest.fixture
def guard_on(settings):
    settings.GATEWAY_ALLOW_PRIVATE_UPSTREAMS = False


def test_the_lean_path_refuses_a_private_address_before_connecting(guard_on, monkeypatch):
    async def must_not_connect(host, port, **kwargs):
        raise AssertionError(f"the guard let a connection to {host}:{port} through")

    monkeypatch.setattr(outbound, "_open_connection", must_not_connect)
    channel = StreamableChannel(
        target("http://169.254.169.254/mcp"), stamp=lambda data, options: None, session_id=None
    )

    with pytest.raises(UpstreamError) as caught:
        asyncio.run(channel.request("tools/call", {"name": "x"}, timeout=5))
    assert caught.value.kind == "refused"
    assert "GATEWAY_ALLOW_PRIVATE_UPSTREAMS" in caught.value.message


def test_the_lean_path_connects_to_the_checked_address(guard_on, monkeypatch):
    connected: list[tuple[str, str | None]] = []

    async def public_answer(host, port, **kwargs):
        return [(2, 1, 6, "", ("93.184.215.14", port))]

    async def record(host, port, **kwargs):
        connected.append((host, kwargs.get("server_hostname")))
        raise ConnectionRefusedError("stopped before any traffic")

    monkeypatch.setattr(outbound.anyio, "getaddrinfo", public_answer)
    monkeypatch.setattr(outbound, "_open_connection", record)
    channel = StreamableChannel(
        target("https://mcp.test/mcp"), stamp=lambda data, options: None, session_id=None
    )

    with pytest.raises(ConnectionError):
        asyncio.run(channel.request("tools/call", {"name": "x"}, timeout=5))
    # The checked address, with TLS verified against the name the URL gave.
    assert connected == [("93.184.215.14", "mcp.test")]
