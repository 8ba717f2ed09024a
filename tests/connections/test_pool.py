"""The upstream session pool, against real upstream servers on loopback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from connections.pool import UpstreamCallError, UpstreamPool
from connections.upstream import UpstreamError, UpstreamTarget
from tests.connections.conftest import ROOT
from tests.helpers import free_port, wait_for_port


def target(url: str, **kwargs) -> UpstreamTarget:
    return UpstreamTarget(url=url, transport=kwargs.pop("transport", "streamable-http"), **kwargs)


def run(coro):
    return asyncio.run(coro)


def text_of(result: dict) -> str:
    return result["content"][0]["text"]


def test_it_reuses_one_upstream_session_for_100_calls(start_upstream):
    upstream = start_upstream()
    before = upstream.stats()

    async def scenario():
        pool = UpstreamPool()
        t = target(upstream.url)
        results = [await pool.call_tool(connection_id="c", target=t, name="tool_01", arguments={})]
        results += await asyncio.gather(
            *(
                pool.call_tool(connection_id="c", target=t, name="tool_01", arguments={})
                for _ in range(99)
            )
        )
        stats = pool.stats()
        await pool.aclose()
        return results, stats

    results, stats = run(scenario())
    after = upstream.stats()
    assert [text_of(r) for r in results] == ["tool_01 ok"] * 100
    assert stats["opened"] == 1
    assert after["initialize"] - before["initialize"] == 1
    assert after["tool_calls"] - before["tool_calls"] == 100
    # One request per call, plus the opening of the one session: no tools/list per call.
    assert after["requests"] - before["requests"] <= 100 + 3


def test_it_keeps_one_session_per_credential(start_upstream):
    upstream = start_upstream()

    async def scenario():
        pool = UpstreamPool()
        alice = target(upstream.url, headers={"Authorization": "Bearer alice"})
        bob = target(upstream.url, headers={"Authorization": "Bearer bob"})
        seen = []
        for t in (alice, bob, alice, bob):
            result = await pool.call_tool(connection_id="c", target=t, name="whoami", arguments={})
            seen.append(json.loads(text_of(result))["authorization"])
        stats = pool.stats()
        await pool.aclose()
        return seen, stats

    seen, stats = run(scenario())
    assert seen == ["Bearer alice", "Bearer bob", "Bearer alice", "Bearer bob"]
    assert stats["opened"] == 2


def test_it_returns_the_upstream_result_unchanged_including_errors(start_upstream):
    upstream = start_upstream()

    async def scenario():
        pool = UpstreamPool()
        t = target(upstream.url)
        unknown = await pool.call_tool(connection_id="c", target=t, name="nope", arguments={})
        resource_error = None
        try:
            await pool.read_resource(connection_id="c", target=t, uri="memo://nothing-here")
        except UpstreamCallError as error:
            resource_error = error
        await pool.aclose()
        return unknown, resource_error

    unknown, resource_error = run(scenario())
    assert unknown["isError"] is True
    assert unknown["content"] == [{"type": "text", "text": "Unknown tool: nope"}]
    assert resource_error is not None
    assert isinstance(resource_error.code, int)


def test_it_bounds_the_calls_in_flight_per_upstream(start_upstream):
    upstream = start_upstream()

    async def scenario():
        pool = UpstreamPool(max_concurrency=2)
        t = target(upstream.url)
        await asyncio.gather(
            *(
                pool.call_tool(connection_id="c", target=t, name="slow", arguments={"seconds": 0.2})
                for _ in range(6)
            )
        )
        await pool.aclose()

    run(scenario())
    stats = upstream.stats()
    assert stats["tool_calls"] == 6
    assert stats["max_in_flight"] == 2


def test_it_turns_a_slow_call_into_a_timeout_error(start_upstream):
    upstream = start_upstream()

    async def scenario():
        pool = UpstreamPool()
        t = target(upstream.url, call_timeout=1.0)
        try:
            await pool.call_tool(
                connection_id="c", target=t, name="slow", arguments={"seconds": 10}
            )
        finally:
            await pool.aclose()

    with pytest.raises(UpstreamError) as caught:
        run(scenario())
    assert caught.value.kind == "timeout"
    assert "did not answer within 1 s" in caught.value.message


def test_it_backs_off_after_failing_to_reach_an_upstream():
    port = free_port()  # nothing listens there

    async def scenario():
        pool = UpstreamPool()
        t = target(f"http://127.0.0.1:{port}/mcp", connect_timeout=2.0)
        errors = []
        for _ in range(2):
            try:
                await pool.call_tool(connection_id="c", target=t, name="x", arguments={})
            except UpstreamError as error:
                errors.append(error)
        await pool.aclose()
        return errors

    first, second = run(scenario())
    assert first.kind == "unreachable"
    assert f"127.0.0.1:{port}" in first.message
    assert second.kind == "unreachable"
    assert "retrying in" in second.message


def test_it_closes_idle_sessions_and_reopens_on_demand(start_upstream):
    upstream = start_upstream()

    async def scenario():
        pool = UpstreamPool(idle_seconds=0.2)
        t = target(upstream.url)
        await pool.call_tool(connection_id="c", target=t, name="tool_00", arguments={})
        open_before = pool.stats()["sessions"]
        await asyncio.sleep(0.6)
        open_after_idle = pool.stats()["sessions"]
        await pool.call_tool(connection_id="c", target=t, name="tool_00", arguments={})
        reopened = pool.stats()
        await pool.aclose()
        return open_before, open_after_idle, reopened

    open_before, open_after_idle, reopened = run(scenario())
    assert open_before == 1
    assert open_after_idle == 0
    assert reopened["sessions"] == 1
    assert upstream.stats()["initialize"] == 2


def _start_demo_sse(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "connections.demo.upstream", "sse", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return process


def test_it_reconnects_when_the_upstream_restarts_under_an_sse_session():
    port = free_port()
    process = _start_demo_sse(port)
    try:

        async def scenario():
            pool = UpstreamPool()
            t = target(f"http://127.0.0.1:{port}/sse", transport="sse")
            args = {"order_id": "ORD-1001"}
            first = await pool.call_tool(
                connection_id="c", target=t, name="get_order_status", arguments=args
            )
            nonlocal process
            process.terminate()
            process.wait(timeout=10)
            process = await asyncio.to_thread(_start_demo_sse, port)
            second = await pool.call_tool(
                connection_id="c", target=t, name="get_order_status", arguments=args
            )
            stats = pool.stats()
            await pool.aclose()
            return first, second, stats

        first, second, stats = run(scenario())
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert "ORD-1001" in text_of(first)
    assert text_of(second) == text_of(first)
    assert stats["opened"] == 2


@pytest.mark.parametrize("era", ["2026-07-28", "2025-11-25"])
def test_it_reports_upstream_list_changed_to_refresh_the_catalog(start_upstream, era):
    upstream = start_upstream(handshake_only=era != "2026-07-28")

    async def scenario():
        changed = asyncio.Event()
        calls = []

        async def on_list_changed(connection_id, kind, client):
            tools = await client.list_tools(cache_mode="bypass")
            calls.append((connection_id, kind, tools.tools[0].name))
            changed.set()

        pool = UpstreamPool(on_list_changed=on_list_changed)
        t = target(upstream.url)
        await pool.call_tool(connection_id="c1", target=t, name="tool_00", arguments={})
        await asyncio.sleep(0.3)  # the listen stream is acknowledged
        grown = await pool.call_tool(connection_id="c1", target=t, name="grow", arguments={})
        await asyncio.wait_for(changed.wait(), timeout=10)
        version = next(iter(pool._sessions.values())).client.protocol_version
        await pool.aclose()
        return text_of(grown), calls, version

    new_tool, calls, version = run(scenario())
    assert version == era
    assert calls[0][:2] == ("c1", "tools")
    assert calls[0][2] == new_tool
