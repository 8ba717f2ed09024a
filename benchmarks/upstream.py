"""A deliberately cheap upstream MCP server for the benchmarks (Streamable HTTP on loopback).

Standard library only: a hand-written HTTP/1.1 keep-alive server on ``asyncio.Protocol``
that answers JSON-RPC directly. It costs a few tens of microseconds of CPU per call, so
that in a benchmark the time goes to the thing measured (the proxy), not to the upstream.
The SDK's own server (Starlette + uvicorn + pydantic) costs an order of magnitude more.

Both protocol eras on every path but ``/stats``:

- handshake era (2025-03-26 … 2025-11-25): ``initialize`` answers with an ``Mcp-Session-Id``;
  later requests must carry a known session id (missing → 400, unknown → 404, as the SDK
  does); ``notifications/*`` → 202; GET → 405; DELETE ends the session;
- 2026-07-28 (``MCP-Protocol-Version: 2026-07-28``): ``server/discover`` and stateless
  requests, lists carrying ``ttlMs``/``cacheScope`` (``--eras legacy`` turns this off and
  answers a discover probe with ``-32022``, so clients fall back to ``initialize``).

Methods: ``initialize``, ``server/discover``, ``ping``, ``tools/list`` (``--tools`` tools named
``tool_0`` …, each with a small input schema), ``tools/call`` (echoes ``text``; an unknown
tool answers an ``isError`` result). Responses are JSON, or SSE with ``--sse``.

Every path is a separate "server" (``/mcp/u0``, ``/mcp/u1`` …), so one process stands for
several connections. ``GET /stats`` answers counters per method and per path (the
handshakes each client opened, which shows whether a proxy reuses its upstream session),
``tools/call`` and ``tools/list`` per path (whether a proxy answers lists from a cache), plus
this process's CPU time.

Run: ``python benchmarks/upstream.py --port 0`` prints ``{"port": N, "pid": P}`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sys
import time
from collections import Counter
from typing import Any

HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS = ("2026-07-28",)
LATEST_HANDSHAKE = HANDSHAKE_VERSIONS[-1]
MAX_BODY = 4 * 1024 * 1024
MAX_HEAD = 64 * 1024
SERVER_INFO = {"name": "bench-upstream", "version": "1.0.0"}
INSTRUCTIONS = "A benchmark upstream: tool_N echoes its text argument."
CAPABILITIES = {"tools": {"listChanged": False}}

_REASONS = {
    200: b"OK",
    202: b"Accepted",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Payload Too Large",
    500: b"Internal Server Error",
}


class Upstream:
    """The MCP behaviour, the sessions and the counters, shared by every connection."""

    def __init__(self, *, tools: int, sse: bool, modern: bool) -> None:
        self.sse = sse
        self.modern = modern
        self.tool_names = frozenset(f"tool_{i}" for i in range(tools))
        self.tools = [
            {
                "name": f"tool_{i}",
                "description": f"Benchmark tool {i}: echoes its text argument.",
                "inputSchema": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "description": "Text to echo."},
                        "n": {"type": "integer", "description": "An optional number."},
                    },
                },
            }
            for i in range(tools)
        ]
        self.sessions: set[str] = set()
        self.methods: Counter[str] = Counter()
        self.handshakes_by_path: Counter[str] = Counter()
        self.calls_by_path: Counter[str] = Counter()
        self.lists_by_path: Counter[str] = Counter()
        self.http_requests = 0
        self.connections_opened = 0
        self.sessions_deleted = 0
        self.started = time.monotonic()

    # -- HTTP level -------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Answer one HTTP request: (status, extra headers, body)."""
        self.http_requests += 1
        if path == "/stats" and method == "GET":
            return 200, [("Content-Type", "application/json")], self.stats_json()
        if method == "DELETE":
            session = headers.get("mcp-session-id", "")
            if session in self.sessions:
                self.sessions.discard(session)
                self.sessions_deleted += 1
                return 200, [], b""
            return 404, [], b""
        if method != "POST":
            allow = "POST" if self.modern_request(headers) else "POST, DELETE"
            return 405, [("Allow", allow)], b""
        try:
            message = json.loads(body)
        except ValueError:
            return _rpc_error_response(400, None, -32700, "Parse error")
        if isinstance(message, list):  # a 2025-03-26 batch
            answers = [self.handle_message(m, path, headers) for m in message]
            payload = [a[2] for a in answers if a[2] is not None]
            extra = [h for a in answers for h in a[1]]
            if not payload:
                return 202, extra, b""
            return self.body_response(200, extra, payload)
        status, extra, response = self.handle_message(message, path, headers)
        if response is None:
            return status, extra, b""
        return self.body_response(status, extra, response)

    def body_response(
        self, status: int, extra: list[tuple[str, str]], payload: Any
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        data = json.dumps(payload, separators=(",", ":")).encode()
        if self.sse and status == 200:
            return (
                status,
                [*extra, ("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")],
                b"event: message\ndata: " + data + b"\n\n",
            )
        return status, [*extra, ("Content-Type", "application/json")], data

    @staticmethod
    def modern_request(headers: dict[str, str]) -> bool:
        return headers.get("mcp-protocol-version", "") not in ("", *HANDSHAKE_VERSIONS)

    # -- JSON-RPC level ---------------------------------------------------------------------

    def handle_message(
        self, message: Any, path: str, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], dict[str, Any] | None]:
        """Answer one JSON-RPC message: (HTTP status, extra headers, response or None)."""
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            if isinstance(message, dict) and ("result" in message or "error" in message):
                return 202, [], None  # a client's response to a server request: nothing to do
            return 400, [], _rpc_error(None, -32600, "Invalid Request")
        method: str = message["method"]
        request_id = message.get("id")
        params = message.get("params") or {}
        self.methods[method] += 1
        if request_id is None:  # a notification
            return 202, [], None
        modern = self.modern_request(headers)
        if modern:
            requested = headers["mcp-protocol-version"]
            if not self.modern or requested not in MODERN_VERSIONS:
                supported = [*HANDSHAKE_VERSIONS, *(MODERN_VERSIONS if self.modern else ())]
                error = _rpc_error(
                    request_id,
                    -32022,
                    "Unsupported protocol version",
                    {"supported": supported, "requested": requested},
                )
                return 400, [], error
            if method == "server/discover":
                self.handshakes_by_path[path] += 1
                return 200, [], self.result(request_id, self.discover_result(), modern=True)
        elif method == "initialize":
            self.handshakes_by_path[path] += 1
            session = secrets.token_hex(16)
            self.sessions.add(session)
            asked = params.get("protocolVersion")
            version = asked if asked in HANDSHAKE_VERSIONS else LATEST_HANDSHAKE
            initialized = {
                "protocolVersion": version,
                "capabilities": CAPABILITIES,
                "serverInfo": SERVER_INFO,
                "instructions": INSTRUCTIONS,
            }
            return 200, [("Mcp-Session-Id", session)], _rpc_result(request_id, initialized)
        else:
            known = headers.get("mcp-session-id")
            if known is None:
                return 400, [], _rpc_error(request_id, -32600, "Bad Request: Missing session ID")
            if known not in self.sessions:
                return 404, [], _rpc_error(request_id, -32600, "Session not found")
        if method == "tools/call":
            self.calls_by_path[path] += 1
            return 200, [], self.result(request_id, self.call_tool(params), modern=modern)
        if method == "tools/list":
            self.lists_by_path[path] += 1
            result: dict[str, Any] = {"tools": self.tools}
            if modern:
                result.update(ttlMs=0, cacheScope="private")
            return 200, [], self.result(request_id, result, modern=modern)
        if method == "ping":
            return 200, [], _rpc_result(request_id, {})
        status = 404 if modern else 200
        return status, [], _rpc_error(request_id, -32601, f"Method not found: {method}")

    def result(self, request_id: Any, result: dict[str, Any], *, modern: bool) -> dict[str, Any]:
        if modern:
            result = {**result, "resultType": "complete"}
        return _rpc_result(request_id, result)

    def discover_result(self) -> dict[str, Any]:
        return {
            "supportedVersions": list(MODERN_VERSIONS),
            "capabilities": CAPABILITIES,
            "serverInfo": SERVER_INFO,
            "instructions": INSTRUCTIONS,
            "ttlMs": 0,
            "cacheScope": "private",
        }

    def call_tool(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        if name not in self.tool_names:
            return {"content": [{"type": "text", "text": f"Unknown tool: {name}"}], "isError": True}
        arguments = params.get("arguments") or {}
        text = arguments.get("text", "") if isinstance(arguments, dict) else ""
        return {"content": [{"type": "text", "text": f"{name}: {text}"}], "isError": False}

    def stats_json(self) -> bytes:
        times = os.times()
        stats = {
            "pid": os.getpid(),
            "uptimeSeconds": round(time.monotonic() - self.started, 3),
            "cpuSeconds": round(times.user + times.system, 3),
            "httpRequests": self.http_requests,
            "connectionsOpened": self.connections_opened,
            "methods": dict(self.methods),
            "initialize": self.methods["initialize"],
            "discover": self.methods["server/discover"],
            "toolsCall": self.methods["tools/call"],
            "toolsList": self.methods["tools/list"],
            "handshakesByPath": dict(self.handshakes_by_path),
            "callsByPath": dict(self.calls_by_path),
            "listsByPath": dict(self.lists_by_path),
            "openSessions": len(self.sessions),
            "sessionsDeleted": self.sessions_deleted,
        }
        return json.dumps(stats).encode()


def _rpc_result(request_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def _rpc_error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def _rpc_error_response(
    status: int, request_id: Any, code: int, message: str
) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps(_rpc_error(request_id, code, message)).encode()
    return status, [("Content-Type", "application/json")], body


class HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and pipelining; Content-Length or chunked request bodies."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.upstream.connections_opened += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and self._serve_one():
            pass

    def _serve_one(self) -> bool:
        """Answer the first complete request in the buffer; False when more bytes are needed."""
        assert self.transport is not None
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                self._reply(413, [], b"", close=True)
            return False
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            self._reply(400, [], b"", close=True)
            return False
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parsed = _dechunk(self.buffer, start)
            if parsed is None:
                return False
            body, consumed = parsed
        else:
            length = int(headers.get("content-length", "0") or 0)
            if length > MAX_BODY:
                self._reply(413, [], b"", close=True)
                return False
            if len(self.buffer) - start < length:
                return False
            body, consumed = bytes(self.buffer[start : start + length]), start + length
        del self.buffer[:consumed]
        path = target.split("?", 1)[0]
        close = headers.get("connection", "").lower() == "close" or version.upper() == "HTTP/1.0"
        try:
            status, extra, payload = self.upstream.handle(method.upper(), path, headers, body)
        except Exception as error:  # never kill the benchmark upstream on a bad request
            print(f"upstream: {type(error).__name__}: {error}", file=sys.stderr)
            status, extra, payload = 500, [], b""
        self._reply(status, extra, payload, close=close)
        return not close

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes, close: bool) -> None:
        assert self.transport is not None
        head = [f"HTTP/1.1 {status} ".encode() + _REASONS.get(status, b"Status")]
        head += [f"{name}: {value}".encode("latin-1") for name, value in headers]
        head.append(b"Content-Length: %d" % len(body))
        if close:
            head.append(b"Connection: close")
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        if close:
            self.transport.close()
            self.transport = None


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``start``: (body, end offset), or None if incomplete."""
    body = bytearray()
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";", 1)[0], 16)
        position = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", position - 2)
            if trailer_end < 0:
                return None
            return bytes(body), trailer_end + 4
        if len(buffer) < position + size + 2:
            return None
        body += buffer[position : position + size]
        position += size + 2


async def serve(*, host: str, port: int, tools: int, sse: bool, modern: bool) -> None:
    upstream = Upstream(tools=tools, sse=sse, modern=modern)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(upstream), host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": bound, "pid": os.getpid()}), flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--tools", type=int, default=20, help="number of tools (tool_0 …)")
    parser.add_argument("--sse", action="store_true", help="answer requests as SSE, not JSON")
    parser.add_argument(
        "--eras",
        choices=["both", "legacy"],
        default="both",
        help="'legacy' refuses 2026-07-28 requests, so clients use the initialize handshake",
    )
    args = parser.parse_args(argv)
    asyncio.run(
        serve(
            host=args.host,
            port=args.port,
            tools=args.tools,
            sse=args.sse,
            modern=args.eras == "both",
        )
    )


if __name__ == "__main__":
    main()
