"""How the gateway answers: JSON unless the call produced a notification to stream,
progress and list_changed for legacy HTTP+SSE clients too, on one instance or two.

Upstreams: the npm reference server ``@modelcontextprotocol/server-everything``
(tests/peers) for progress, and ``tests/upstreams/sized_server.py`` (the SDK's
MCPServer) for results of a chosen size. Clients: the project's ``mcp`` 2.x client
(Streamable HTTP and SSE) and raw HTTP where the wire itself is asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from connections.models import CatalogEntry, Connection
from connections.services import connection_check_health, connection_create
from endpoints.services import endpoint_create, endpoint_entries_set_enabled
from tests.connections.conftest import _start, _stop
from tests.factories import ConnectionFactory
from tests.helpers import free_port, mcp_handshake, needs_redis, wait_for_port
from tests.transport.test_changes import toggle

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "tests" / "peers"
EVERYTHING = PEERS / "node_modules" / "@modelcontextprotocol" / "server-everything"
NODE = shutil.which("node")
ONE_MIB = 1024 * 1024
LONG_RUN = "everything__trigger-long-running-operation"


# --- upstreams and endpoints ------------------------------------------------------------------


# server-everything over stdio reaches the gateway through the SDK's session; over
# stdio goes through the SDK session; Streamable HTTP through the pool's lean request
# path, which must read the priming event this server starts every SSE answer with.
EVERYTHING_MODES = [
    pytest.param("stdio", id="everything-stdio"),
    pytest.param("streamableHttp", id="everything-http"),
]


@pytest.fixture
def everything(request, settings, admin) -> Iterator[Served]:
    """An endpoint serving server-everything's long-running tool (stdio unless the
    test is parametrized with another mode)."""
    mode = getattr(request, "param", "stdio")
    if NODE is None:
        pytest.skip("Node.js is not installed: cannot run the npm server-everything peer")
    if not (EVERYTHING / "dist" / "index.js").exists():
        pytest.fail("tests/peers is not installed: run .ci/install-peers", pytrace=False)
    index = str(EVERYTHING / "dist" / "index.js")
    if mode == "stdio":
        settings.GATEWAY_ALLOW_STDIO = True
        connection = connection_create(
            organization=admin.organization,
            name="Everything",
            slug="everything",
            transport="stdio",
            command=NODE,
            args=[index, "stdio"],
        )
        yield serve(admin, connection, ["trigger-long-running-operation"])
        return
    port = free_port()
    process = subprocess.Popen(
        [NODE, "--require", str(PEERS / "loopback.cjs"), index, mode],
        cwd=PEERS,
        env={"PATH": os.environ.get("PATH", ""), "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        connection = connection_create(
            organization=admin.organization,
            name="Everything",
            slug="everything",
            server_url=f"http://127.0.0.1:{port}/mcp",
        )
        yield serve(admin, connection, ["trigger-long-running-operation"])
    finally:
        _stop(process)


@pytest.fixture
def sized_url() -> Iterator[object]:
    """``sized_url(json_response=...)``: start the sized test server, return its URL."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(*, json_response: bool) -> str:
        port = free_port()
        flags = ["--json-response"] if json_response else []
        processes.append(_start(["tests.upstreams.sized_server", str(port), *flags], port))
        return f"http://127.0.0.1:{port}/mcp"

    yield start
    for process in processes:
        _stop(process)


@dataclass
class Served:
    slug: str
    endpoint: object
    connection: Connection


def serve(admin, connection: Connection, tools: list[str], *, slug: str = "team") -> Served:
    """An endpoint serving the given tools of one upstream (checked, catalog stored)."""
    check = connection_check_health(connection=connection)
    assert check.ok, check.error
    endpoint = endpoint_create(
        organization=admin.organization,
        name="Team tools",
        description="Tools for the team.",
        slug=slug,
        connection_ids=[str(connection.pk)],
    )
    entries = CatalogEntry.objects.filter(connection=connection, key__in=tools)
    assert entries.count() == len(tools), list(entries.values_list("key", flat=True))
    endpoint_entries_set_enabled(endpoint=endpoint, entry_ids=[e.pk for e in entries], enabled=True)
    return Served(slug=slug, endpoint=endpoint, connection=connection)


def serve_sized(admin, url: str, tools: list[str]) -> Served:
    """An endpoint serving tools of the sized test server at ``url``."""
    connection: Connection = ConnectionFactory(  # type: ignore[assignment]
        organization=admin.organization, name="Sized", slug="sized", server_url=url
    )
    return serve(admin, connection, tools)


def call(request_id: int, name: str, arguments: dict, token: object = None) -> dict:
    params: dict = {"name": name, "arguments": arguments}
    if token is not None:
        params["_meta"] = {"progressToken": token}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def sse_messages(text: str) -> list[dict]:
    """The JSON data of each event of an SSE body (comments and empty events skipped)."""
    messages = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")]
        if data and "".join(data):
            messages.append(json.loads("\n".join(data)))
    return messages


def sdk_client(url: str, token: str, mode: str, **options) -> tuple[httpx2.AsyncClient, Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    transport = streamable_http_client(url, http_client=http, **options)
    return http, Client(transport, mode=mode, cache=None)


# --- Streamable HTTP: JSON unless something is streamed ---------------------------------------


@pytest.mark.parametrize("accept", ["application/json, text/event-stream", "application/json"])
def test_it_answers_json_when_no_progress_happened_even_with_a_progress_token(
    live_gateway, admin, sized_url, accept
):
    served = serve_sized(admin, sized_url(json_response=False), ["sized"])
    gateway = live_gateway(GATEWAY_ALLOW_STDIO="true")
    url = gateway.endpoint_url(served.slug)
    headers = {**mcp_handshake(url, admin.token), "Accept": accept}

    response = httpx.post(
        url, headers=headers, json=call(7, "sized__sized", {"size": 5}, token="tok-7"), timeout=30
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {"content": [{"type": "text", "text": "xxxxx"}], "isError": False},
    }


@pytest.mark.parametrize("everything", EVERYTHING_MODES, indirect=True)
def test_it_switches_to_sse_on_the_first_progress_and_ends_with_the_result(
    live_gateway, admin, everything
):
    served = everything
    gateway = live_gateway(GATEWAY_ALLOW_STDIO="true")
    url = gateway.endpoint_url(served.slug)
    headers = mcp_handshake(url, admin.token)
    arguments = {"duration": 0.3, "steps": 3}

    streamed = httpx.post(
        url, headers=headers, json=call(3, LONG_RUN, arguments, token="client-token"), timeout=30
    )
    unasked = httpx.post(url, headers=headers, json=call(4, LONG_RUN, arguments), timeout=30)

    assert streamed.status_code == 200, streamed.text
    assert streamed.headers["content-type"] == "text/event-stream", streamed.text
    messages = sse_messages(streamed.text)
    assert messages[:3] == [
        {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": "client-token", "progress": step, "total": 3},
        }
        for step in (1, 2, 3)
    ]
    assert len(messages) == 4
    assert messages[3]["id"] == 3
    assert "Long running operation completed" in messages[3]["result"]["content"][0]["text"]
    # No token: the upstream is asked for no progress, and the answer is plain JSON.
    assert unasked.headers["content-type"] == "application/json"
    assert unasked.json()["result"] == messages[3]["result"]


def test_it_never_streams_to_a_client_that_does_not_accept_sse(live_gateway, admin, everything):
    served = everything
    gateway = live_gateway(GATEWAY_ALLOW_STDIO="true")
    url = gateway.endpoint_url(served.slug)
    headers = {**mcp_handshake(url, admin.token), "Accept": "application/json"}

    response = httpx.post(
        url,
        headers=headers,
        json=call(5, LONG_RUN, {"duration": 0.2, "steps": 2}, token="t"),
        timeout=30,
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "Long running operation completed" in response.json()["result"]["content"][0]["text"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_sdk_client_gets_progress_then_the_result(live_gateway, admin, everything, mode):
    served = everything
    gateway = live_gateway(GATEWAY_ALLOW_STDIO="true")

    async def scenario():
        seen = []

        async def on_progress(progress, total, message):
            seen.append((progress, total))

        http, client = sdk_client(gateway.endpoint_url(served.slug), admin.token, mode)
        async with http, client:
            result = await client.session.call_tool(
                LONG_RUN, {"duration": 0.3, "steps": 3}, progress_callback=on_progress
            )
        return result, seen

    result, seen = asyncio.run(scenario())
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert result.content[0].text.startswith("Long running operation completed")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_a_one_mib_result_round_trips_through_the_sdk_client_that_sends_a_progress_token(
    live_gateway, admin, sized_url, mode
):
    # Directly, this server's JSON answer of 1 MiB reaches the SDK client; through the
    # gateway it must too, although the client sends a progress token (as fastmcp's
    # Client does on every call) and caps one SSE event at 1 MiB.
    served = serve_sized(admin, sized_url(json_response=True), ["sized"])
    gateway = live_gateway(GATEWAY_ALLOW_STDIO="true")

    async def scenario():
        seen = []

        async def on_progress(progress, total, message):
            seen.append(progress)

        http, client = sdk_client(gateway.endpoint_url(served.slug), admin.token, mode)
        async with http, client:
            result = await client.session.call_tool(
                "sized__sized", {"size": ONE_MIB}, progress_callback=on_progress
            )
        return result, seen

    result, seen = asyncio.run(scenario())
    assert seen == []
    assert result.is_error is False
    assert result.content[0].text == "x" * ONE_MIB


def test_a_large_result_after_progress_arrives_whole_as_the_last_event(
    live_gateway, admin, sized_url
):
    # Once progress went out the answer must be an SSE event: one JSON-RPC message is
    # one event, so a client reads it only if its event cap allows (the SDK's default
    # of 1 MiB does not; ``max_sse_event_size=None`` lifts it).
    served = serve_sized(admin, sized_url(json_response=False), ["sized_after_progress"])
    gateway = live_gateway(GATEWAY_ALLOW_STDIO="true")

    async def scenario():
        seen = []

        async def on_progress(progress, total, message):
            seen.append((progress, total, message))

        http, client = sdk_client(
            gateway.endpoint_url(served.slug), admin.token, "legacy", max_sse_event_size=None
        )
        async with http, client:
            result = await client.session.call_tool(
                "sized__sized_after_progress",
                {"size": ONE_MIB, "steps": 2},
                progress_callback=on_progress,
            )
        return result, seen

    result, seen = asyncio.run(scenario())
    assert seen == [(1, 2, "step 1"), (2, 2, "step 2")]
    assert result.content[0].text == "x" * ONE_MIB


# --- legacy HTTP+SSE clients ----------------------------------------------------------------


def legacy_client(url: str, token: str, **options) -> Client:
    headers = {"Authorization": f"Bearer {token}"}
    return Client(sse_client(url + "/sse", headers=headers), mode="legacy", cache=None, **options)


@pytest.mark.parametrize("everything", EVERYTHING_MODES, indirect=True)
def test_a_legacy_sse_client_receives_progress_with_its_own_token(live_gateway, admin, everything):
    served = everything
    gateway = live_gateway(GATEWAY_ALLOW_STDIO="true")

    async def scenario():
        seen = []

        async def on_progress(progress, total, message):
            seen.append((progress, total))

        async with legacy_client(gateway.endpoint_url(served.slug), admin.token) as client:
            result = await client.session.call_tool(
                LONG_RUN, {"duration": 0.3, "steps": 3}, progress_callback=on_progress
            )
        return result, seen

    result, seen = asyncio.run(scenario())
    # The SDK matches progress to the call by the token it sent: each step arrived
    # under that token, before the answer.
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert result.content[0].text.startswith("Long running operation completed")


def test_a_legacy_sse_client_gets_list_changed_after_a_toggle(live_gateway, admin, sized_url):
    served = serve_sized(admin, sized_url(json_response=True), ["sized"])
    gateway = live_gateway(GATEWAY_ALLOW_STDIO="true")

    async def scenario():
        changed = asyncio.Event()

        async def on_message(message):
            if isinstance(message, types.ToolListChangedNotification):
                changed.set()

        client = legacy_client(
            gateway.endpoint_url(served.slug), admin.token, message_handler=on_message
        )
        async with client:
            before = {tool.name for tool in (await client.list_tools()).tools}
            await asyncio.to_thread(toggle, gateway, admin, served, "sized_after_progress", True)
            await asyncio.wait_for(changed.wait(), timeout=10)
            after = {tool.name for tool in (await client.list_tools()).tools}
        return before, after

    before, after = asyncio.run(scenario())
    assert before == {"sized__sized"}
    assert after == {"sized__sized", "sized__sized_after_progress"}


async def legacy_call_across(held_by, served_by, slug: str, token: str, message: dict) -> list:
    """Open a legacy SSE stream on one instance, POST ``message`` to the other, and
    return every message the stream carried up to the answer."""
    auth = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream(
            "GET",
            held_by.endpoint_url(slug) + "/sse",
            headers={**auth, "Accept": "text/event-stream"},
        ) as stream,
    ):
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        endpoint = None
        async for line in lines:
            if line.startswith("data:"):
                endpoint = line[5:].strip()
                break
        assert endpoint is not None and endpoint.startswith("/mcp/")
        # The POST goes to the other instance: no sticky routing.
        posted = await http.post(served_by.base + endpoint, headers=auth, json=message)
        assert posted.status_code == 202
        messages = []
        async with asyncio.timeout(30):
            async for line in lines:
                if line.startswith("data:"):
                    messages.append(json.loads(line[5:]))
                    if "id" in messages[-1]:
                        break
        return messages


@needs_redis
def test_progress_of_a_legacy_call_served_by_another_instance_reaches_the_stream(
    live_gateway, admin, everything
):
    a, b = live_gateway(GATEWAY_ALLOW_STDIO="true"), live_gateway(GATEWAY_ALLOW_STDIO="true")
    message = call(9, LONG_RUN, {"duration": 0.3, "steps": 3}, token="odd")

    messages = asyncio.run(legacy_call_across(a, b, everything.slug, admin.token, message))

    assert [m.get("method") for m in messages] == ["notifications/progress"] * 3 + [None]
    assert [m["params"]["progressToken"] for m in messages[:3]] == ["odd"] * 3
    assert [m["params"]["progress"] for m in messages[:3]] == [1, 2, 3]
    assert messages[3]["id"] == 9
    assert "Long running operation completed" in messages[3]["result"]["content"][0]["text"]


@needs_redis
def test_a_burst_of_progress_across_instances_keeps_its_order_and_never_loses_the_answer(
    live_gateway, admin, sized_url
):
    # Hundreds of notifications through the channel layer (a channel holds 100): any
    # that cannot fit are dropped, the rest arrive in order, and the answer arrives.
    served = serve_sized(admin, sized_url(json_response=False), ["sized_after_progress"])
    a, b = live_gateway(), live_gateway()
    message = call(11, "sized__sized_after_progress", {"size": 3, "steps": 400}, token=5)

    messages = asyncio.run(legacy_call_across(a, b, served.slug, admin.token, message))

    progress = [m["params"]["progress"] for m in messages[:-1]]
    assert all(m["method"] == "notifications/progress" for m in messages[:-1])
    assert {m["params"]["progressToken"] for m in messages[:-1]} == {5}
    assert progress == sorted(set(progress)) and 0 < len(progress) <= 400
    assert messages[-1] == {
        "jsonrpc": "2.0",
        "id": 11,
        "result": {"content": [{"type": "text", "text": "xxx"}], "isError": False},
    }


# --- the pieces, in process ---------------------------------------------------------------


def test_sse_events_carry_utf8_json_and_split_every_line_end():
    from endpoints.mcp.sse import sse_event

    # Not ASCII-escaped: clients cap one event in bytes, and \uXXXX would triple this.
    assert sse_event({"text": "日本"}) == '{"text":"日本"}'.join(["data: ", "\n\n"]).encode()
    assert sse_event(b'{"a":1}', event="message") == b'event: message\ndata: {"a":1}\n\n'
    # CR, LF and CRLF all end a line in an event stream: each becomes a data line.
    assert (
        sse_event("a\rb\r\nc\nd", event_id="7") == b"id: 7\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    )


def test_a_held_response_streams_notifications_in_order_and_drops_late_ones():
    from endpoints.transport import _HeldResponse

    async def scenario(notify_first: bool):
        sent = []

        async def send(message):
            await asyncio.sleep(0)  # a real server may yield on every write
            sent.append(message)

        held = _HeldResponse(send, [(b"mcp-session-id", b"s")])
        answer = {"jsonrpc": "2.0", "id": 1, "result": {}}
        if notify_first:
            # Notifications from tasks of their own, racing with the answer.
            tasks = [
                asyncio.create_task(held.notify({"method": "p", "params": {"n": n}}))
                for n in (1, 2, 3)
            ]
            await asyncio.sleep(0)
            await held.answer(answer, 200)
            await asyncio.gather(*tasks)
        else:
            await held.answer(answer, 200)
        await held.notify({"method": "p", "params": {"n": 4}})  # too late: dropped
        return sent

    streamed = asyncio.run(scenario(notify_first=True))
    assert streamed[0]["type"] == "http.response.start"
    assert (b"content-type", b"text/event-stream") in streamed[0]["headers"]
    assert (b"mcp-session-id", b"s") in streamed[0]["headers"]
    assert [m["body"] for m in streamed[1:]] == [
        b'data: {"method":"p","params":{"n":1}}\n\n',
        b'data: {"method":"p","params":{"n":2}}\n\n',
        b'data: {"method":"p","params":{"n":3}}\n\n',
        b'data: {"jsonrpc":"2.0","id":1,"result":{}}\n\n',
    ]
    assert streamed[-1]["more_body"] is False

    answered = asyncio.run(scenario(notify_first=False))
    assert len(answered) == 2
    assert (b"content-type", b"application/json") in answered[0]["headers"]
    assert answered[1]["body"] == b'{"jsonrpc":"2.0","id":1,"result":{}}'


def test_a_full_channel_drops_a_legacy_notification_but_not_the_answer():
    from channels.exceptions import ChannelFull

    from endpoints.transport import _StreamRelay

    class FullForAWhile:
        """A hub whose channel to the stream's holder refuses the next ``full`` sends."""

        def __init__(self, full: int) -> None:
            self.full = full
            self.delivered: list[tuple[str, str, dict]] = []

        async def deliver(self, channel, stream, message):
            if self.full:
                self.full -= 1
                raise ChannelFull()
            self.delivered.append((channel, stream, message))

    async def scenario():
        hub = FullForAWhile(full=3)
        relay = _StreamRelay(hub, "mcp.hub.other!x", "stream-1")
        await relay.notify({"method": "notifications/progress", "params": {"progress": 1}})
        await relay.answer({"jsonrpc": "2.0", "id": 1, "result": {}})
        await relay.notify({"method": "notifications/progress", "params": {"progress": 2}})
        return hub.delivered

    delivered = asyncio.run(scenario())
    assert delivered == [("mcp.hub.other!x", "stream-1", {"jsonrpc": "2.0", "id": 1, "result": {}})]
