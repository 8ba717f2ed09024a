"""The pool's wire with an upstream, through the SDK handshake and the lean path, against
a scripted HTTP/1.1 server on loopback that answers the way real servers do, including
the ways that broke calls: a refused ``server/discover`` probe stamped with a session id,
priming events, CRLF event streams cut mid-line, notifications and server requests
before the answer, streams that drop, connections closed after the request, 404s.

Each test counts what reached the server, so "sent once" is checked on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from connections.models import HealthCheck
from connections.pool import UpstreamPool
from connections.probe import catalog_fetch_checked
from connections.upstream import UpstreamError, UpstreamTarget
from tests.factories import ConnectionFactory

Handler = Callable[["Request", asyncio.StreamWriter, "Script"], Awaitable[bool]]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer: int = 0  # the client's port: which connection carried it

    @property
    def message(self) -> dict[str, Any]:
        return json.loads(self.body) if self.body else {}

    @property
    def rpc(self) -> str:
        return self.message.get("method", "") if self.method == "POST" else self.method


@dataclass
class Script:
    """What the server does with ``tools/call`` (and GETs carrying Last-Event-ID)."""

    call: Handler
    resume: Handler | None = None
    requests: list[Request] = field(default_factory=list)
    sessions: int = 0
    pending: Request | None = None  # the call a resumed stream answers

    def seen(self, rpc: str) -> list[Request]:
        return [r for r in self.requests if r.rpc == rpc]


def head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def json_reply(writer: asyncio.StreamWriter, status: int, body: Any, **headers: str) -> None:
    payload = json.dumps(body).encode()
    all_headers = {"content-type": "application/json", "content-length": str(len(payload))}
    all_headers.update({k.replace("_", "-"): v for k, v in headers.items()})
    writer.write(head(status, all_headers) + payload)


def sse_start(writer: asyncio.StreamWriter) -> None:
    writer.write(head(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"}))


async def chunk(writer: asyncio.StreamWriter, data: bytes, pause: float = 0.01) -> None:
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
    await writer.drain()
    await asyncio.sleep(pause)


def sse_end(writer: asyncio.StreamWriter) -> None:
    writer.write(b"0\r\n\r\n")


def answer(request: Request, result: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request.message["id"], "result": result}).encode()


def text_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}]}


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script
) -> None:
    try:
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = raw.decode().split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Request(method, path, headers, body, writer.get_extra_info("peername")[1])
            script.requests.append(request)
            if not await respond(request, writer, script):
                return
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def respond(request: Request, writer: asyncio.StreamWriter, script: Script) -> bool:
    """The handshake the way a Python SDK 1.x FastMCP server does it (stateful)."""
    session = request.headers.get("mcp-session-id")
    if request.method == "DELETE":
        json_reply(writer, 200, {})
        return True
    if request.method == "GET":
        if "last-event-id" in request.headers and script.resume is not None:
            return await script.resume(request, writer, script)
        json_reply(writer, 405, {})
        return True
    message = request.message
    rpc = message.get("method")
    if rpc == "initialize":
        script.sessions += 1
        result = {
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {"listChanged": True}},
            "serverInfo": {"name": "scripted", "version": "1"},
        }
        json_reply(
            writer,
            200,
            {"jsonrpc": "2.0", "id": message["id"], "result": result},
            mcp_session_id=f"sess-{script.sessions}",
        )
        return True
    if session is None:
        # FastMCP 1.x answers the SDK's server/discover probe with 400 and a session
        # id it forgets at once.
        error = {"code": -32600, "message": "Bad Request: Missing session ID"}
        json_reply(
            writer,
            400,
            {"jsonrpc": "2.0", "id": "server-error", "error": error},
            mcp_session_id="forgotten-at-once",
        )
        return True
    if session != f"sess-{script.sessions}":
        json_reply(
            writer,
            404,
            {
                "jsonrpc": "2.0",
                "id": "server-error",
                "error": {"code": -32001, "message": "Session not found"},
            },
        )
        return True
    if "id" not in message:  # a notification, or our answer to a server request
        writer.write(head(202, {"content-length": "0"}))
        return True
    if rpc in ("tools/call", "ping"):
        return await script.call(request, writer, script)
    if rpc == "tools/list":
        json_reply(writer, 200, {"jsonrpc": "2.0", "id": message["id"], "result": {"tools": []}})
        return True
    json_reply(writer, 200, {"jsonrpc": "2.0", "id": message["id"], "result": {}})
    return True


@contextlib.asynccontextmanager
async def scripted(call: Handler, resume: Handler | None = None):
    script = Script(call=call, resume=resume)
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader, writer):
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await serve_connection(reader, writer, script)
        finally:
            tasks.discard(task)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield (
            script,
            UpstreamTarget(
                url=f"http://127.0.0.1:{port}/mcp", transport="streamable-http", call_timeout=5.0
            ),
        )
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


async def call(pool: UpstreamPool, target: UpstreamTarget, name: str = "t", **kwargs: Any):
    return await pool.call_tool(connection_id="c", target=target, name=name, arguments={}, **kwargs)


def run(scenario):
    return asyncio.run(scenario())


# --- tests ----------------------------------------------------------------------------------


def test_it_keeps_the_session_id_of_initialize_not_the_one_on_a_refused_probe():
    async def ok(request, writer, script):
        json_reply(writer, 200, json.loads(answer(request, text_result("ok"))))
        return True

    async def scenario():
        async with scripted(ok) as (script, target):
            pool = UpstreamPool()
            results = [await call(pool, target) for _ in range(3)]
            await pool.aclose()
            return script, results

    script, results = run(scenario)
    assert [r["content"][0]["text"] for r in results] == ["ok"] * 3
    calls = script.seen("tools/call")
    assert [r.headers["mcp-session-id"] for r in calls] == ["sess-1"] * 3
    assert script.sessions == 1


def test_a_priming_event_and_crlf_events_cut_mid_line_give_the_answer():
    async def primed(request, writer, script):
        sse_start(writer)
        await chunk(writer, b"id: p-0\r\ndata: \r\n\r\n")  # the TypeScript SDK's priming event
        await chunk(writer, b": keep-alive\r\nretry: 100\r")
        body = b"\nid: p-1\r\nevent: message\r\ndata: " + answer(request, text_result("primed"))
        await chunk(writer, body[:20])
        await chunk(writer, body[20:] + b"\r")
        await chunk(writer, b"\n\r\n")
        sse_end(writer)
        return True

    async def scenario():
        async with scripted(primed) as (script, target):
            pool = UpstreamPool()
            result = await call(pool, target)
            second = await call(pool, target)
            await pool.aclose()
            return script, result, second

    script, result, second = run(scenario)
    assert result["content"][0]["text"] == second["content"][0]["text"] == "primed"
    assert len(script.seen("tools/call")) == 2


def test_progress_logs_and_server_requests_before_the_answer_reach_their_hooks():
    async def chatty(request, writer, script):
        token = request.message["params"]["_meta"]["progressToken"]
        sse_start(writer)
        events = [
            {
                "method": "notifications/progress",
                "params": {"progressToken": token, "progress": 1, "total": 2, "message": "half"},
            },
            {"method": "notifications/message", "params": {"level": "info", "data": "working"}},
            {
                "id": "srv-1",
                "method": "sampling/createMessage",
                "params": {"messages": [], "maxTokens": 1},
            },
            # A server request whose id equals ours must not be taken for the answer.
            {"id": request.message["id"], "method": "roots/list"},
            {
                "method": "notifications/progress",
                "params": {"progressToken": token, "progress": 2, "total": 2},
            },
        ]
        for event in events:
            await chunk(
                writer, b"data: " + json.dumps({"jsonrpc": "2.0", **event}).encode() + b"\n\n"
            )
        await chunk(writer, b"data: " + answer(request, text_result("done")) + b"\n\n")
        sse_end(writer)
        return True

    async def scenario():
        async with scripted(chatty) as (script, target):
            pool = UpstreamPool()
            progress, notes = [], []

            async def on_progress(value, total, message):
                progress.append((value, total, message))

            async def on_notification(message):
                notes.append(message)

            result = await call(pool, target, progress=on_progress, on_notification=on_notification)
            for _ in range(50):  # the refusals of the server requests go out in the background
                if len([r for r in script.requests if "error" in r.message]) == 2:
                    break
                await asyncio.sleep(0.02)
            await pool.aclose()
            return script, result, progress, notes

    script, result, progress, notes = run(scenario)
    assert result["content"][0]["text"] == "done"
    assert progress == [(1.0, 2.0, "half"), (2.0, 2.0, None)]
    assert notes == [
        {
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {"level": "info", "data": "working"},
        }
    ]
    refusals = sorted(str(r.message["id"]) for r in script.requests if "error" in r.message)
    assert len(refusals) == 2 and "srv-1" in refusals
    assert len(script.seen("tools/call")) == 1


def test_a_stream_that_drops_after_an_event_id_is_resumed_with_last_event_id():
    async def drops(request, writer, script):
        token = request.message["params"]["_meta"]["progressToken"]
        script.pending = request
        sse_start(writer)
        await chunk(writer, b"retry: 50\nid: s1-0\ndata:\n\n")
        progress = {
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": token, "progress": 1},
        }
        await chunk(
            writer, b"id: s1-1\ndata: " + json.dumps(progress).encode() + b'\n\ndata: {"cut'
        )
        return False  # the connection drops mid-stream

    async def resume(request, writer, script):
        assert request.headers["last-event-id"] == "s1-1"
        sse_start(writer)
        await chunk(
            writer, b"id: s1-2\ndata: " + answer(script.pending, text_result("resumed")) + b"\n\n"
        )
        sse_end(writer)
        return True

    async def scenario():
        async with scripted(drops, resume) as (script, target):
            pool = UpstreamPool()
            seen = []

            async def on_progress(value, total, message):
                seen.append(value)

            result = await call(pool, target, progress=on_progress)
            await pool.aclose()
            return script, result, seen

    script, result, seen = run(scenario)
    assert result["content"][0]["text"] == "resumed"
    assert seen == [1.0]
    assert len(script.seen("tools/call")) == 1  # never sent again
    (get,) = [r for r in script.requests if r.method == "GET" and "last-event-id" in r.headers]
    assert get.headers["mcp-session-id"] == "sess-1"
    assert get.headers["accept"] == "text/event-stream"


@pytest.mark.parametrize("how", ["no event id", "closed before answering"])
def test_a_call_whose_answer_is_lost_after_sending_fails_and_is_not_sent_again(how):
    async def lost(request, writer, script):
        if how == "no event id":
            sse_start(writer)
            await chunk(
                writer, b'data: {"jsonrpc":"2.0","method":"notifications/message","params":{}}\n\n'
            )
        return False

    async def scenario():
        async with scripted(lost) as (script, target):
            pool = UpstreamPool()
            with pytest.raises(UpstreamError) as caught:
                await call(pool, target)
            await pool.aclose()
            return script, caught.value

    script, error = run(scenario)
    assert len(script.seen("tools/call")) == 1
    assert error.kind == "interrupted"
    assert "not sent again" in error.message
    assert error.detail


def test_an_idle_connection_the_server_closed_is_replaced_before_writing():
    async def answers_then_closes(request, writer, script):
        json_reply(writer, 200, json.loads(answer(request, text_result("ok"))))
        await writer.drain()
        return False  # the server closes the kept-alive connection while idle

    async def scenario():
        async with scripted(answers_then_closes) as (script, target):
            pool = UpstreamPool()
            first = await call(pool, target)
            await asyncio.sleep(0.1)
            second = await call(pool, target)
            await pool.aclose()
            return script, first, second

    script, first, second = run(scenario)
    assert first["content"][0]["text"] == second["content"][0]["text"] == "ok"
    assert len(script.seen("tools/call")) == 2
    assert script.sessions == 1


def test_a_404_for_the_session_reopens_it_once_and_sends_the_call_there():
    async def forgets_first(request, writer, script):
        if script.sessions == 1:
            json_reply(writer, 404, {})
            return True
        json_reply(writer, 200, json.loads(answer(request, text_result("again"))))
        return True

    async def scenario():
        async with scripted(forgets_first) as (script, target):
            pool = UpstreamPool()
            result = await call(pool, target)
            await pool.aclose()
            return script, result

    script, result = run(scenario)
    assert result["content"][0]["text"] == "again"
    assert script.sessions == 2
    assert [r.headers["mcp-session-id"] for r in script.seen("tools/call")] == ["sess-1", "sess-2"]


def test_a_server_that_forgets_every_session_gets_one_reopen_then_a_clear_error():
    async def always_404(request, writer, script):
        json_reply(writer, 404, {})
        return True

    async def scenario():
        async with scripted(always_404) as (script, target):
            pool = UpstreamPool()
            with pytest.raises(UpstreamError) as caught:
                await call(pool, target)
            await pool.aclose()
            return script, caught.value

    script, error = run(scenario)
    assert script.sessions == 2
    assert len(script.seen("tools/call")) == 2
    assert error.kind == "unreachable"
    assert "404" in error.detail


def test_an_http_error_keeps_its_status_and_body_in_the_detail():
    async def refuses(request, writer, script):
        payload = b"upstream says: quota exceeded"
        writer.write(
            head(429, {"content-type": "text/plain", "content-length": str(len(payload))}) + payload
        )
        return True

    async def scenario():
        async with scripted(refuses) as (script, target):
            pool = UpstreamPool()
            with pytest.raises(UpstreamError) as caught:
                await call(pool, target)
            await pool.aclose()
            return script, caught.value

    script, error = run(scenario)
    assert error.kind == "http"
    assert error.message == "The upstream answered HTTP 429."
    assert "HTTP 429" in error.detail and "quota exceeded" in error.detail
    assert "tools/call" in error.detail
    assert len(script.seen("tools/call")) == 1


def test_queued_calls_never_wait_longer_than_the_call_timeout():
    async def hangs(request, writer, script):
        if request.message["params"]["name"] == "fast":
            json_reply(writer, 200, json.loads(answer(request, text_result("fast"))))
            return True
        await asyncio.sleep(30)
        return False

    async def scenario():
        async with scripted(hangs) as (script, target):
            target = UpstreamTarget(url=target.url, transport=target.transport, call_timeout=1.0)
            pool = UpstreamPool(max_concurrency=2)
            await call(pool, target, name="fast")  # opens the session
            loop = asyncio.get_running_loop()

            async def timed(name: str, delay: float):
                await asyncio.sleep(delay)
                started = loop.time()
                try:
                    result = await call(pool, target, name=name)
                    outcome = result["content"][0]["text"]
                except UpstreamError as error:
                    outcome = error
                return outcome, loop.time() - started

            outcomes = await asyncio.gather(
                *(timed("hang", 0) for _ in range(4)), timed("fast", 0.3)
            )
            await pool.aclose()
            return script, outcomes

    script, outcomes = run(scenario)
    # Before, a queued call waited for a slot (up to one timeout) and then for its own
    # answer (another): 2 s. Now the whole call is bounded by the 1 s timeout (plus
    # scheduling slack on a loaded machine).
    for outcome, elapsed in outcomes:
        assert elapsed < 1.8, (outcome, elapsed)
    hung, queued, fast = outcomes[:2], outcomes[2:4], outcomes[4]
    assert all(isinstance(o, UpstreamError) and o.kind == "timeout" for o, _ in hung)
    for outcome, _ in queued:
        assert isinstance(outcome, UpstreamError) and outcome.kind == "timeout"
        assert "busy" in outcome.message, outcome.message
    # The slow tool delayed the fast one by at most the call timeout; it never hung.
    assert fast[0] == "fast" or (isinstance(fast[0], UpstreamError) and fast[0].kind == "timeout")
    # Queued calls that never got a slot were never sent.
    names = [r.message["params"]["name"] for r in script.seen("tools/call")]
    assert names.count("hang") == 2


def test_a_health_check_fails_a_server_whose_handshake_works_but_whose_calls_fail():
    async def calls_fail(request, writer, script):
        payload = b"internal error: handler crashed"
        writer.write(
            head(500, {"content-type": "text/plain", "content-length": str(len(payload))}) + payload
        )
        return True

    async def scenario():
        async with scripted(calls_fail) as (script, target):
            with pytest.raises(UpstreamError) as caught:
                await catalog_fetch_checked(target)
            return script, caught.value

    script, error = run(scenario)
    assert script.seen("tools/list")  # the SDK's handshake and listing went through
    (ping,) = script.seen("ping")  # then a request the way calls go
    assert ping.headers["mcp-session-id"] == "sess-1"
    assert error.kind == "http"
    assert error.message == "The upstream answered HTTP 500."
    assert (
        "HTTP 500" in error.detail and "ping" in error.detail and "handler crashed" in error.detail
    )


def test_a_health_check_of_a_server_that_answers_passes():
    async def answers(request, writer, script):
        json_reply(writer, 200, json.loads(answer(request, {})))
        return True

    async def scenario():
        async with scripted(answers) as (script, target):
            snapshot = await catalog_fetch_checked(target)
            return script, snapshot

    script, snapshot = run(scenario)
    assert snapshot.server_name == "scripted"
    assert len(script.seen("ping")) == 1


@pytest.mark.parametrize("role", ["admin", "member"])
def test_the_connection_page_shows_the_precise_failure_to_admins_only(client, admin, member, role):
    person = admin if role == "admin" else member
    connection = ConnectionFactory(
        organization=person.organization,
        status="error",
        last_check_error="The upstream answered HTTP 500.",
    )
    HealthCheck.objects.create(
        connection=connection,
        checked_at=connection.updated_at,
        ok=False,
        error_kind="http",
        error="The upstream answered HTTP 500.",
        detail="HTTP 500 (text/plain) to POST /mcp ping on session sess-1: handler crashed",
    )
    client.force_login(person.user)

    page = client.get(f"/connections/{connection.pk}").content.decode()

    assert "The upstream answered HTTP 500." in page
    assert ("handler crashed" in page) == (role == "admin")


def test_a_connection_is_not_reused_past_the_keep_alive_timeout_the_server_announced():
    async def announces(request, writer, script):
        payload = answer(request, text_result("ok"))
        headers = {
            "content-type": "application/json",
            "content-length": str(len(payload)),
            "keep-alive": "timeout=1.5",
        }
        writer.write(head(200, headers) + payload)
        return True

    async def scenario():
        async with scripted(announces) as (script, target):
            pool = UpstreamPool()
            await call(pool, target)
            await asyncio.sleep(0.1)
            await call(pool, target)  # well within the timeout: same connection
            await asyncio.sleep(0.7)
            await call(pool, target)  # too close to the server's close: a new one
            await pool.aclose()
            return script

    script = run(scenario)
    first, second, third = (r.peer for r in script.seen("tools/call"))
    assert first == second
    assert third != second


def test_a_server_that_refuses_the_handshake_is_described_with_its_statuses():
    async def refuse_all(reader, writer):
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            payload = b"boom"
            writer.write(head(503, {"content-type": "text/plain", "content-length": "4"}) + payload)
            await writer.drain()
        writer.close()

    async def scenario():
        server = await asyncio.start_server(refuse_all, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        target = UpstreamTarget(
            url=f"http://127.0.0.1:{port}/mcp?key=secret-value", transport="streamable-http"
        )
        try:
            with pytest.raises(UpstreamError) as caught:
                await catalog_fetch_checked(target)
        finally:
            server.close()
        return caught.value

    error = run(scenario)
    assert error.message == "The upstream answered HTTP 503."
    assert "while opening the session" in error.detail
    assert "HTTP 503" in error.detail
    assert "secret-value" not in error.detail
