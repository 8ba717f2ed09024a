"""A lean request path for an open Streamable HTTP upstream session.

The pool opens every session with the official SDK (``upstream_session``: it
negotiates 2026-07-28 or the ``initialize`` handshake, holds the GET stream or
the ``subscriptions/listen`` stream, relists tools). Steady-state requests —
``tools/call``, ``resources/read``, ``prompts/get``, ``completion/complete`` —
then go through ``StreamableChannel``: a JSON-RPC POST over kept-alive HTTP/1.1
connections, plain dicts in and out, stamped exactly as the SDK session would
stamp them (the session's own stamp: ``MCP-Protocol-Version``, and in
2026-07-28 the ``_meta`` envelope, ``Mcp-Method``, ``Mcp-Name`` and the
``Mcp-Param-*`` headers of listed tools), with the session id the handshake
gave. Profiling showed the SDK's per-request machinery (pydantic models in and
out, anyio memory streams and a task per request, httpx2) cost about 1.8 ms of
CPU per call; this path costs a tenth of it.

Answers may be JSON or SSE. In an SSE answer, progress notifications for the
request go to its progress callback, ``list_changed`` notifications to
``on_list_changed``, and a server request is answered with an error (the
gateway relays no sampling or elicitation). Every new connection goes through
the SSRF guard (``outbound.open_guarded_connection``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlsplit

import httpx2

from connections import wirejson
from connections.outbound import UpstreamAddressRefused, open_guarded_connection
from connections.upstream import UpstreamError, UpstreamTarget

logger = logging.getLogger(__name__)

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]
StampFn = Callable[[dict[str, Any], dict[str, Any]], None]

# Our request ids: far from the SDK session's own counter (it sends the relists).
_IDS: Final = itertools.count(1_000_000_001)
_LIST_CHANGED: Final = {
    "notifications/tools/list_changed": "tools",
    "notifications/resources/list_changed": "resources",
    "notifications/prompts/list_changed": "prompts",
}
_HEAD_LIMIT: Final = 64 * 1024
_DRAIN_SECONDS: Final = 30.0


class UpstreamJsonRpcError(Exception):
    """The upstream answered the request with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


class SessionLost(Exception):
    """The upstream no longer knows the session (404 on a request carrying its id)."""


class NotSent(ConnectionError):
    """The request never reached the upstream (connect failed): safe to send again."""


class _Closed(ConnectionError):
    """A kept-alive connection was closed by the upstream before answering."""


class _Connection:
    __slots__ = ("reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.used = reader, writer, False

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _Response:
    __slots__ = ("headers", "status")

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers


class StreamableChannel:
    """JSON-RPC requests on one upstream session over kept-alive HTTP/1.1."""

    def __init__(
        self,
        target: UpstreamTarget,
        *,
        stamp: StampFn,
        session_id: str | None,
        on_list_changed: Callable[[str], None] | None = None,
    ) -> None:
        parts = urlsplit(target.url)
        self.target = target
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._tls else 80)
        default_port = self._port == (443 if self._tls else 80)
        host_header = self._host if ":" not in self._host else f"[{self._host}]"
        if not default_port:
            host_header = f"{host_header}:{self._port}"
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        self._request_line = f"POST {path} HTTP/1.1\r\n".encode("latin-1")
        fixed = {
            "host": host_header,
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
        }
        if session_id:
            fixed["mcp-session-id"] = session_id
        for name, value in target.headers.items():
            fixed[name.lower()] = value
        self._fixed = fixed
        self._session_id = session_id
        self._stamp = stamp
        self._on_list_changed = on_list_changed
        self._idle: list[_Connection] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._ssl: ssl.SSLContext | None = _tls_context() if self._tls else None
        self._closed = False
        self.connections_opened = 0
        self._version_header: str | None = None

    # --- the request -----------------------------------------------------------------

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        progress: ProgressFn | None = None,
        timeout: float,
    ) -> dict[str, Any]:
        """The result of one request; raises ``UpstreamJsonRpcError``, ``SessionLost``,
        ``NotSent``, ``UpstreamError`` (timeout, HTTP status) or ``OSError``."""
        request_id = next(_IDS)
        body_params: dict[str, Any] = dict(params) if params else {}
        meta = body_params.get("_meta")
        body_params["_meta"] = dict(meta) if isinstance(meta, dict) else {}
        if progress is not None:
            body_params["_meta"]["progressToken"] = request_id
        data: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        data["params"] = body_params
        options: dict[str, Any] = {}
        self._stamp(data, options)
        if not body_params["_meta"]:
            del body_params["_meta"]
        headers = dict(self._fixed)
        for name, value in (options.get("headers") or {}).items():
            headers[name.lower()] = value
        self._version_header = headers.get("mcp-protocol-version")
        payload = wirejson.dumps(data)
        headers["content-length"] = str(len(payload))
        head = self._request_line + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode(
            "latin-1"
        )
        message = head + b"\r\n" + payload
        try:
            async with asyncio.timeout(timeout):
                return await self._exchange(message, request_id, progress)
        except TimeoutError:
            raise UpstreamError(
                "timeout",
                f"The upstream {self.target.display} did not answer within {timeout:g} s.",
            ) from None

    async def _exchange(
        self, message: bytes, request_id: int, progress: ProgressFn | None
    ) -> dict[str, Any]:
        for _ in range(2):
            connection = await self._acquire()
            reused = connection.used
            connection.used = True
            disposition = "close"
            try:
                connection.writer.write(message)
                try:
                    response = await self._read_head(connection)
                except _Closed:
                    if reused:
                        continue  # the upstream closed an idle connection: send on a new one
                    raise
                answer, disposition = await self._answer(connection, response, request_id, progress)
            finally:
                if disposition == "keep" and not self._closed and connection.usable():
                    self._idle.append(connection)
                elif disposition != "handed":
                    connection.close()
            return _result_of(answer, request_id)
        raise _Closed("the upstream closed the connection twice")  # pragma: no cover

    async def _acquire(self) -> _Connection:
        if self._closed:
            raise NotSent("the session is closed")
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                return connection
            connection.close()
        try:
            reader, writer = await open_guarded_connection(
                self._host,
                self._port,
                ssl_context=self._ssl,
                timeout=self.target.connect_timeout,
                limit=_HEAD_LIMIT * 16,
            )
        except UpstreamAddressRefused as error:
            raise UpstreamError("refused", str(error)) from None
        except OSError as error:
            raise NotSent(str(error) or type(error).__name__) from error
        self.connections_opened += 1
        return _Connection(reader, writer)

    async def _read_head(self, connection: _Connection) -> _Response:
        try:
            head = await connection.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if not error.partial:
                raise _Closed("the upstream closed the connection") from None
            raise ConnectionResetError("the upstream closed the connection mid-answer") from None
        except (ConnectionResetError, BrokenPipeError):
            # Reset before a byte of the answer: a kept-alive connection the upstream
            # had already dropped.
            raise _Closed("the upstream reset the connection") from None
        except asyncio.LimitOverrunError:
            raise UpstreamError("protocol", "The upstream sent oversized HTTP headers.") from None
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise UpstreamError("protocol", "The upstream's answer was not HTTP/1.1.") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if status == 100:
            return await self._read_head(connection)
        return _Response(status, headers)

    async def _answer(
        self,
        connection: _Connection,
        response: _Response,
        request_id: int,
        progress: ProgressFn | None,
    ) -> tuple[Any, str]:
        """(the JSON-RPC answer, what becomes of the connection: keep, close or handed)."""
        content_type = response.headers.get("content-type", "").lower()
        keep = "keep" if response.headers.get("connection", "").lower() != "close" else "close"
        if content_type.startswith("text/event-stream") and response.status == 200:
            return await self._answer_sse(connection, response, request_id, progress, keep)
        body = await _read_body(connection.reader, response.headers)
        if response.status == 200 and content_type.startswith("application/json"):
            return _parse(body), keep
        if response.status == 404 and self._session_id:
            raise SessionLost("the upstream no longer knows the session")
        if response.status >= 400 and content_type.startswith("application/json"):
            # A JSON-RPC error at a non-2xx status (2026-07-28 pins -32020 to 400).
            with contextlib.suppress(UpstreamError):
                parsed = _parse(body)
                if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
                    return parsed, keep
        if response.status == 401:
            raise UpstreamError(
                "unauthorized",
                "The upstream answered 401 Unauthorized: check the connection's token.",
            )
        if response.status == 403:
            raise UpstreamError(
                "forbidden", "The upstream answered 403 Forbidden: the credential lacks access."
            )
        if response.status >= 400:
            raise UpstreamError("http", f"The upstream answered HTTP {response.status}.")
        raise UpstreamError(
            "protocol",
            f"The upstream answered HTTP {response.status} "
            f"({content_type or 'no content type'}) to a request.",
        )

    async def _answer_sse(
        self,
        connection: _Connection,
        response: _Response,
        request_id: int,
        progress: ProgressFn | None,
        keep: str,
    ) -> tuple[Any, str]:
        events = _sse_messages(_body_chunks(connection.reader, response.headers))
        async for message in events:
            if message.get("id") == request_id and ("result" in message or "error" in message):
                # The server ends the stream after the answer: finish reading it in the
                # background, then keep the connection.
                self._spawn(self._drain(connection, events, keep == "keep"))
                return message, "handed"
            await self._server_message(message, request_id, progress)
        raise ConnectionResetError("the upstream ended the event stream without an answer")

    async def _drain(
        self, connection: _Connection, events: AsyncIterator[dict[str, Any]], keep: bool
    ) -> None:
        try:
            async with asyncio.timeout(_DRAIN_SECONDS):
                async for message in events:
                    await self._server_message(message, None, None)
        except Exception:
            connection.close()
            return
        if keep and not self._closed and connection.usable():
            self._idle.append(connection)
        else:
            connection.close()

    async def _server_message(
        self, message: dict[str, Any], request_id: int | None, progress: ProgressFn | None
    ) -> None:
        method = message.get("method")
        if not isinstance(method, str):
            return
        raw_params = message.get("params")
        params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
        if "id" in message:
            # A server request (sampling, elicitation, roots): the gateway relays none.
            self._spawn(self._refuse(message["id"], method))
        elif method == "notifications/progress" and progress is not None:
            if params.get("progressToken") == request_id:
                progress_value = params.get("progress")
                total = params.get("total")
                text = params.get("message")
                await progress(
                    float(progress_value) if isinstance(progress_value, int | float) else 0.0,
                    float(total) if isinstance(total, int | float) else None,
                    text if isinstance(text, str) else None,
                )
        elif method in _LIST_CHANGED and self._on_list_changed is not None:
            self._on_list_changed(_LIST_CHANGED[method])

    async def _refuse(self, server_request_id: Any, method: str) -> None:
        error = {
            "jsonrpc": "2.0",
            "id": server_request_id,
            "error": {"code": -32601, "message": f"The gateway does not relay {method}."},
        }
        headers = dict(self._fixed)
        if self._version_header:
            headers["mcp-protocol-version"] = self._version_header
        payload = wirejson.dumps(error)
        headers["content-length"] = str(len(payload))
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.target.call_timeout):
                connection = await self._acquire()
                try:
                    connection.writer.write(self._request_line + head + b"\r\n" + payload)
                    response = await self._read_head(connection)
                    await _read_body(connection.reader, response.headers)
                finally:
                    connection.close()

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def close(self) -> None:
        """Close every connection (the session ended)."""
        self._closed = True
        for connection in self._idle:
            connection.close()
        self._idle.clear()
        for task in list(self._background):
            task.cancel()


_TLS: list[ssl.SSLContext] = []


def _tls_context() -> ssl.SSLContext:
    """The TLS settings of the SDK path's client (httpx2's, environment ignored), made once."""
    if not _TLS:
        _TLS.append(httpx2.create_ssl_context(trust_env=False))
    return _TLS[0]


# --- HTTP/1.1 bodies and SSE ----------------------------------------------------------------


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    length = headers.get("content-length")
    if length is not None and "chunked" not in headers.get("transfer-encoding", "").lower():
        try:
            size = int(length)
        except ValueError:
            raise UpstreamError("protocol", "The upstream sent a bad Content-Length.") from None
        return await _exactly(reader, size)
    return b"".join([chunk async for chunk in _body_chunks(reader, headers)])


async def _exactly(reader: asyncio.StreamReader, size: int) -> bytes:
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise ConnectionResetError("the upstream closed the connection mid-answer") from None


async def _body_chunks(
    reader: asyncio.StreamReader, headers: dict[str, str]
) -> AsyncIterator[bytes]:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            try:
                line = await reader.readuntil(b"\r\n")
                size = int(line.split(b";", 1)[0].strip(), 16)
            except (asyncio.IncompleteReadError, ValueError):
                raise ConnectionResetError("the upstream broke a chunked answer") from None
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return
            chunk = await _exactly(reader, size + 2)
            yield chunk[:-2]
    length = headers.get("content-length")
    if length is not None:
        remaining = int(length)
        while remaining > 0:
            chunk = await reader.read(min(remaining, 65536))
            if not chunk:
                raise ConnectionResetError("the upstream closed the connection mid-answer")
            remaining -= len(chunk)
            yield chunk
        return
    while chunk := await reader.read(65536):  # delimited by the connection's end
        yield chunk


async def _sse_messages(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    """The JSON-RPC messages of an SSE body (``message`` events; comments skipped)."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk.replace(b"\r\n", b"\n")
        while (end := buffer.find(b"\n\n")) >= 0:
            block, buffer = buffer[:end], buffer[end + 2 :]
            event = "message"
            data: list[bytes] = []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[6:] if line[5:6] == b" " else line[5:])
                elif line.startswith(b"event:"):
                    event = line[6:].strip().decode("latin-1")
            if event == "message" and data:
                parsed = _parse(b"\n".join(data))
                if isinstance(parsed, dict):
                    yield parsed


def _parse(body: bytes) -> Any:
    try:
        return wirejson.loads(body)
    except ValueError:
        raise UpstreamError("protocol", "The upstream's answer was not valid JSON.") from None


def _result_of(message: Any, request_id: int) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise UpstreamError("protocol", "The upstream's answer was not a JSON-RPC message.")
    error = message.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        raise UpstreamJsonRpcError(
            code if isinstance(code, int) else -32603,
            str(error.get("message", "")),
            error.get("data"),
        )
    result = message.get("result")
    if not isinstance(result, dict) or message.get("id") != request_id:
        raise UpstreamError("protocol", "The upstream's answer did not match the request.")
    return result
