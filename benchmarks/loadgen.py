"""Load generator speaking raw Streamable HTTP (not the SDK client) to an MCP endpoint.

Each worker owns one keep-alive HTTP/1.1 connection and, once, does the handshake:
``initialize`` (``MCP-Protocol-Version`` 2025-06-18 or 2025-11-25, ``Mcp-Session-Id``) and
``notifications/initialized`` — or with ``--protocol-version 2026-07-28`` one
``server/discover`` and stateless requests carrying ``_meta`` and ``Mcp-Method``/``Mcp-Name``.
Then it loops ``tools/call`` (or ``tools/list``) until the time is up. Responses may be
``application/json`` or ``text/event-stream`` (the SSE events are parsed and the JSON-RPC
response with the request's id is taken).

Errors counted: HTTP status other than 200, a JSON-RPC error, an ``isError`` result (unless
``--expect-tool-error``), a malformed or missing response, a broken connection (the worker
then reconnects and handshakes again), a timeout.

Two HTTP clients: ``raw`` (default: an ``asyncio.Protocol`` with pre-encoded requests, a few
microseconds of client CPU per call) and ``httpx`` (for comparison; its per-request cost is
several times higher, which on a 2-core machine competes with the process measured).

Only requests completed inside the measurement window (after ``--warmup``) count. CPU time of
processes named with ``--watch NAME=PID[,PID…]`` (their threads' schedstat) is read exactly at
the window's edges and divided by the calls completed in it.

``python benchmarks/loadgen.py --url http://127.0.0.1:8000/mcp/demo --concurrency 16
--duration 5 --json`` prints a JSON report; without ``--json`` a short summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

HANDSHAKE_VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSION = "2026-07-28"
CLIENT_INFO = {"name": "mcp-gateway-loadgen", "version": "1.0"}
ERROR_SAMPLES_KEPT = 5
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class LoadError(Exception):
    """One failed request: counted, never raised out of a worker."""


@dataclass(frozen=True)
class LoadConfig:
    """What to run: endpoint(s), mode, concurrency and timing."""

    urls: Sequence[str]
    mode: str = "call"  # "call" (tools/call) or "list" (tools/list)
    concurrency: int = 1
    duration: float = 5.0
    warmup: float = 1.0
    tool: str = "auto"  # "auto": the first tool that tools/list answers
    arguments: dict[str, Any] = field(default_factory=lambda: {"text": "hello"})
    protocol_version: str = "2025-11-25"
    bearer: str | None = None
    http_client: str = "raw"
    timeout: float = 10.0
    expect_tool_error: bool = False
    watch: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class Totals:
    """Counters shared by the workers."""

    calls: int = 0
    sent: int = 0
    errors: int = 0
    warmup_errors: int = 0
    handshakes: int = 0
    reconnects: int = 0
    latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)


# -- HTTP clients --------------------------------------------------------------------------


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    finished_at: float


class HttpConnection(Protocol):
    async def request(
        self, method: str, headers: list[tuple[str, str]], body: bytes, timeout: float
    ) -> HttpResponse: ...

    async def close(self) -> None: ...


class _RawProtocol(asyncio.Protocol):
    """Reads HTTP/1.1 responses (Content-Length, chunked, or until close) off one socket."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[HttpResponse] | None = None
        self.closed = False
        self.head: tuple[int, dict[str, str], int] | None = None  # status, headers, body start

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            headers = self.head[1] if self.head is not None else {}
            delimited = "content-length" in headers or "chunked" in headers.get(
                "transfer-encoding", ""
            )
            if self.head is not None and not delimited:  # the body ran until the close
                self._finish(len(self.buffer), bytes(self.buffer[self.head[2] :]))
            else:
                self.waiter.set_exception(LoadError("connection closed by the server"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            self._parse()

    def _parse(self) -> None:
        if self.head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.head = (status, headers, end + 4)
        status, headers, start = self.head
        if "chunked" in headers.get("transfer-encoding", ""):
            decoded = _dechunk(self.buffer, start)
            if decoded is not None:
                self._finish(decoded[1], decoded[0])
        elif "content-length" in headers:
            end = start + int(headers["content-length"])
            if len(self.buffer) >= end:
                self._finish(end, bytes(self.buffer[start:end]))
        elif status in (202, 204, 304) or 100 <= status < 200:
            self._finish(start, b"")
        # otherwise the body runs until the server closes the connection

    def _finish(self, consumed: int, body: bytes) -> None:
        assert self.head is not None and self.waiter is not None
        status, headers, _ = self.head
        response = HttpResponse(status, headers, body, time.perf_counter())
        del self.buffer[:consumed]
        self.head = None
        self.waiter.set_result(response)


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body from ``start``: (body, end offset), or None while incomplete."""
    body = bytearray()
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";", 1)[0], 16)
        position = line_end + 2
        if size == 0:
            if buffer[position : position + 2] == b"\r\n":
                return bytes(body), position + 2
            trailer_end = buffer.find(b"\r\n\r\n", position)
            return None if trailer_end < 0 else (bytes(body), trailer_end + 4)
        if len(buffer) < position + size + 2:
            return None
        body += buffer[position : position + size]
        position += size + 2


class RawConnection:
    """One keep-alive HTTP/1.1 connection on asyncio's transport, requests encoded by hand."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"the raw client speaks plain http only, not {parts.scheme!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.host_header = parts.netloc
        self.protocol: _RawProtocol | None = None

    async def _connect(self) -> _RawProtocol:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_RawProtocol, self.host, self.port)
        return protocol

    async def request(
        self, method: str, headers: list[tuple[str, str]], body: bytes, timeout: float
    ) -> HttpResponse:
        if self.protocol is None or self.protocol.closed:
            self.protocol = await self._connect()
        protocol = self.protocol
        assert protocol.transport is not None
        lines = [f"{method} {self.path} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"Content-Length: {len(body)}")
        protocol.waiter = asyncio.get_running_loop().create_future()
        protocol.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if protocol.buffer:
            protocol._parse()
        try:
            return await asyncio.wait_for(protocol.waiter, timeout)
        except BaseException:
            await self.close()  # the connection's state is unknown now
            raise
        finally:
            protocol.waiter = None

    async def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol = None


class HttpxConnection:
    """The same through httpx, one connection per worker (for comparison)."""

    def __init__(self, url: str) -> None:
        import httpx

        self.url = url
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=None,  # noqa: S113 (each request is bounded by asyncio.wait_for)
        )

    async def request(
        self, method: str, headers: list[tuple[str, str]], body: bytes, timeout: float
    ) -> HttpResponse:
        response = await asyncio.wait_for(
            self.client.request(method, self.url, headers=headers, content=body), timeout
        )
        return HttpResponse(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
            time.perf_counter(),
        )

    async def close(self) -> None:
        await self.client.aclose()


# -- MCP over one connection ---------------------------------------------------------------


def _json_rpc_response(response: HttpResponse, request_id: int) -> dict[str, Any]:
    """The JSON-RPC response to ``request_id`` from a JSON or SSE body; raises LoadError."""
    if response.status != 200:
        raise LoadError(f"HTTP {response.status}: {response.body[:200]!r}")
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("text/event-stream"):
        for data in _sse_data(response.body):
            message = json.loads(data)
            if (
                isinstance(message, dict)
                and message.get("id") == request_id
                and ("result" in message or "error" in message)
            ):
                return message
        raise LoadError("the SSE stream ended without the response")
    if not content_type.startswith("application/json"):
        raise LoadError(f"unexpected content type {content_type!r}")
    message = json.loads(response.body)
    if not isinstance(message, dict) or message.get("id") != request_id:
        raise LoadError(f"not the response to request {request_id}: {response.body[:200]!r}")
    return message


def _sse_data(body: bytes) -> list[str]:
    """The data of every event in an SSE body (multi-line data joined).

    Comments (``: keep-alive``) and events without data (the priming event of 2025-11-25
    servers: an ``id`` and an empty ``data``) are skipped.
    """
    events: list[str] = []
    data: list[str] = []
    for raw_line in body.decode("utf-8").replace("\r\n", "\n").split("\n"):
        if not raw_line:
            if data:
                events.append("\n".join(data))
                data = []
        elif raw_line.startswith("data:"):
            value = raw_line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        events.append("\n".join(data))
    return [event for event in events if event.strip()]


class McpSession:
    """One worker's MCP session: handshake once, then cheap requests."""

    def __init__(self, connection: HttpConnection, config: LoadConfig) -> None:
        self.connection = connection
        self.config = config
        self.modern = config.protocol_version == MODERN_VERSION
        self.next_id = 0
        self.headers: list[tuple[str, str]] = [
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ]
        if config.bearer:
            self.headers.append(("Authorization", f"Bearer {config.bearer}"))
        self.meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        }

    async def handshake(self) -> None:
        if self.modern:
            self.headers.append(("MCP-Protocol-Version", MODERN_VERSION))
            await self.rpc("server/discover", {})
            return
        params = {
            "protocolVersion": self.config.protocol_version,
            "capabilities": {},
            "clientInfo": CLIENT_INFO,
        }
        request_id = self._id()
        response = await self.connection.request(
            "POST", self.headers, _encode(request_id, "initialize", params), self.config.timeout
        )
        message = _json_rpc_response(response, request_id)
        if "error" in message:
            raise LoadError(f"initialize failed: {message['error']}")
        session = response.headers.get("mcp-session-id")
        if session:
            self.headers.append(("Mcp-Session-Id", session))
        negotiated = message["result"].get("protocolVersion", self.config.protocol_version)
        self.headers.append(("MCP-Protocol-Version", negotiated))
        note = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
        answer = await self.connection.request("POST", self.headers, note, self.config.timeout)
        if answer.status not in (200, 202, 204):
            raise LoadError(f"notifications/initialized answered HTTP {answer.status}")

    async def rpc(self, method: str, params: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """Send one request; (response message, latency in seconds). Raises LoadError."""
        request_id = self._id()
        headers = self.headers
        if self.modern:
            params = {**params, "_meta": self.meta}
            headers = [*headers, ("Mcp-Method", method)]
            if "name" in params:
                headers.append(("Mcp-Name", str(params["name"])))
        body = _encode(request_id, method, params)
        started = time.perf_counter()
        try:
            response = await self.connection.request("POST", headers, body, self.config.timeout)
        except TimeoutError:
            raise LoadError(f"no answer within {self.config.timeout} s") from None
        except OSError as error:
            raise LoadError(f"connection failed: {error}") from None
        try:
            message = _json_rpc_response(response, request_id)
        except (ValueError, UnicodeDecodeError) as error:
            raise LoadError(f"malformed response: {error}") from None
        if "error" in message:
            raise LoadError(f"JSON-RPC error {message['error']}")
        return message, response.finished_at - started

    async def end(self) -> None:
        """DELETE the session (handshake era), so long benchmark runs leave nothing open."""
        session = [h for h in self.headers if h[0] == "Mcp-Session-Id"]
        if session:
            # A failure here is harmless: the session ends with the server anyway.
            with contextlib.suppress(LoadError, OSError, TimeoutError):
                await self.connection.request("DELETE", self.headers, b"", self.config.timeout)
        await self.connection.close()

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id


def _encode(request_id: int, method: str, params: dict[str, Any]) -> bytes:
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return json.dumps(message, separators=(",", ":")).encode()


# -- the run -------------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    """CPU time of a process: the sum of its threads' on-CPU nanoseconds (schedstat).

    ``/proc/<pid>/task/*/schedstat`` is exact to the nanosecond, where the utime + stime of
    ``/proc/<pid>/stat`` count 10 ms ticks; falls back to those when schedstat is missing.
    """
    total_ns = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat", "rb") as schedstat:
                    total_ns += int(schedstat.read().split()[0])
            except FileNotFoundError:
                continue  # the thread ended meanwhile
    except FileNotFoundError:
        return proc_cpu_ticks_seconds(pid)
    return total_ns / 1e9


def proc_cpu_ticks_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads, also ended ones), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _cpu_of(watch: dict[str, list[int]]) -> dict[str, tuple[float, float]]:
    """(precise, tick-based) CPU seconds of each watched group of processes."""
    return {
        name: (
            sum(proc_cpu_seconds(pid) for pid in pids),
            sum(proc_cpu_ticks_seconds(pid) for pid in pids),
        )
        for name, pids in watch.items()
    }


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


async def _pick_tool(session: McpSession) -> str:
    message, _ = await session.rpc("tools/list", {})
    tools = message["result"].get("tools") or []
    if not tools:
        raise LoadError("tools/list answered no tools; pass --tool")
    return str(tools[0]["name"])


async def run_load(config: LoadConfig) -> dict[str, Any]:
    """Run the load described by ``config`` and return the report (see ``main``)."""
    totals = Totals()
    loop = asyncio.get_running_loop()
    factory = RawConnection if config.http_client == "raw" else HttpxConnection
    sessions = [
        McpSession(factory(config.urls[i % len(config.urls)]), config)
        for i in range(config.concurrency)
    ]

    async def handshake(session: McpSession) -> None:
        await session.handshake()
        totals.handshakes += 1

    await asyncio.gather(*(handshake(s) for s in sessions))
    tool = config.tool
    if config.mode == "call" and tool == "auto":
        tool = await _pick_tool(sessions[0])
    method, params = (
        ("tools/call", {"name": tool, "arguments": config.arguments})
        if config.mode == "call"
        else ("tools/list", {})
    )

    started = loop.time()
    window_start = started + config.warmup
    window_end = window_start + config.duration
    cpu_before: dict[str, tuple[float, float]] = {}
    cpu_after: dict[str, tuple[float, float]] = {}
    own_before = own_after = 0.0

    async def clock() -> None:
        nonlocal own_before, own_after
        await asyncio.sleep(max(0.0, window_start - loop.time()))
        cpu_before.update(_cpu_of(config.watch))
        own_before = time.process_time()
        await asyncio.sleep(max(0.0, window_end - loop.time()))
        cpu_after.update(_cpu_of(config.watch))
        own_after = time.process_time()

    async def worker(session: McpSession) -> None:
        while True:
            now = loop.time()
            if now >= window_end:
                return
            counted = now >= window_start
            totals.sent += 1
            try:
                message, latency = await session.rpc(method, params)
                if method == "tools/call":
                    is_error = bool(message["result"].get("isError"))
                    if is_error != config.expect_tool_error:
                        raise LoadError(f"isError={is_error}: {json.dumps(message)[:200]}")
            except (LoadError, KeyError, TypeError, AttributeError) as error:
                if loop.time() < window_end:
                    if counted:
                        totals.errors += 1
                    else:
                        totals.warmup_errors += 1
                    if len(totals.error_samples) < ERROR_SAMPLES_KEPT:
                        totals.error_samples.append(f"{type(error).__name__}: {error}"[:300])
                await _recover(session, totals)
                continue
            if counted and loop.time() <= window_end:
                totals.calls += 1
                totals.latencies.append(latency)

    await asyncio.gather(clock(), *(worker(s) for s in sessions))
    await asyncio.gather(*(session.end() for session in sessions))

    ordered = sorted(totals.latencies)
    calls = totals.calls
    report: dict[str, Any] = {
        "config": {
            **asdict(config),
            "urls": list(config.urls),
            "tool": tool if config.mode == "call" else None,
        },
        "calls": calls,
        # Every request of the loop, warm-up and failures included (not the setup's).
        "requestsSent": totals.sent,
        "errors": totals.errors,
        "warmupErrors": totals.warmup_errors,
        "errorSamples": totals.error_samples,
        "handshakes": totals.handshakes,
        "reconnects": totals.reconnects,
        "durationSeconds": config.duration,
        "throughput": calls / config.duration,
        "latencyMs": {
            "p50": _percentile(ordered, 0.50) * 1000,
            "p90": _percentile(ordered, 0.90) * 1000,
            "p99": _percentile(ordered, 0.99) * 1000,
            "max": (ordered[-1] * 1000) if ordered else float("nan"),
            "mean": (sum(ordered) / len(ordered) * 1000) if ordered else float("nan"),
        },
        "cpuSeconds": {name: cpu_after[name][0] - cpu_before[name][0] for name in cpu_after},
        # The same from the 10 ms tick counters, which also count threads that ended.
        "cpuSecondsTicks": {name: cpu_after[name][1] - cpu_before[name][1] for name in cpu_after},
        "cpuMsPerCall": {
            name: ((cpu_after[name][0] - cpu_before[name][0]) / calls * 1000) if calls else None
            for name in cpu_after
        },
        "loadgenCpuMsPerCall": ((own_after - own_before) / calls * 1000) if calls else None,
    }
    return report


async def _recover(session: McpSession, totals: Totals) -> None:
    """After a failed request: reconnect and handshake again, so one failure stays one."""
    await session.connection.close()
    for header in ("Mcp-Session-Id", "MCP-Protocol-Version"):
        session.headers = [h for h in session.headers if h[0] != header]
    totals.reconnects += 1
    try:
        await session.handshake()
        totals.handshakes += 1
    except (LoadError, OSError, TimeoutError, KeyError, ValueError):
        await asyncio.sleep(0.05)  # the server is down: do not spin


def _parse_watch(values: list[str]) -> dict[str, list[int]]:
    watch: dict[str, list[int]] = {}
    for value in values:
        name, _, pids = value.partition("=")
        if not name or not pids:
            raise argparse.ArgumentTypeError(f"--watch wants NAME=PID[,PID…], not {value!r}")
        watch.setdefault(name, []).extend(int(p) for p in pids.split(","))
    return watch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", action="append", required=True, help="MCP URL (repeatable)")
    parser.add_argument("--mode", choices=["call", "list"], default="call")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--tool", default="auto", help="tool to call; auto = first listed")
    parser.add_argument("--arguments", default='{"text": "hello"}', help="tool arguments (JSON)")
    parser.add_argument(
        "--protocol-version",
        choices=[*HANDSHAKE_VERSIONS, MODERN_VERSION],
        default="2025-11-25",
    )
    parser.add_argument("--bearer", default=os.environ.get("LOADGEN_BEARER"))
    parser.add_argument("--http-client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--expect-tool-error", action="store_true")
    parser.add_argument("--watch", action="append", default=[], help="NAME=PID[,PID…]")
    parser.add_argument("--json", action="store_true", help="print the JSON report")
    args = parser.parse_args(argv)
    config = LoadConfig(
        urls=args.url,
        mode=args.mode,
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        tool=args.tool,
        arguments=json.loads(args.arguments),
        protocol_version=args.protocol_version,
        bearer=args.bearer,
        http_client=args.http_client,
        timeout=args.timeout,
        expect_tool_error=args.expect_tool_error,
        watch=_parse_watch(args.watch),
    )
    try:
        report = asyncio.run(run_load(config))
    except (LoadError, OSError) as error:
        print(f"loadgen: setup failed: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report))
    else:
        latency = report["latencyMs"]
        print(
            f"{report['calls']} calls, {report['errors']} errors, "
            f"{report['throughput']:.0f}/s, p50 {latency['p50']:.3f} ms, "
            f"p99 {latency['p99']:.3f} ms"
        )
        for name, value in report["cpuMsPerCall"].items():
            print(f"  {name}: {value:.3f} ms CPU per call")
        for sample in report["errorSamples"]:
            print(f"  error: {sample}")
    return 0 if report["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
