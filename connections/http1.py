"""HTTP/1.1 on plain asyncio streams, for the lean request path: the answer's head,
its body (Content-Length, chunked, or up to the connection's end) capped at
``ANSWER_MAX_BYTES``, kept-alive connections and the ``Keep-Alive`` hint.

Written for one client talking to MCP servers, not as a general HTTP client: no
redirects, no compression (the requests never ask for it), no HTTP/2.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Final

import httpx2

from connections.eventstream import ANSWER_MAX_BYTES
from connections.upstream import UpstreamError

HEAD_LIMIT: Final = 64 * 1024
# A server that announces ``Keep-Alive: timeout=N`` closes idle connections after
# N s: stop reusing them this much earlier, so our request never crosses its close.
KEEPALIVE_MARGIN: Final = 1.0


class ConnectionClosed(ConnectionError):
    """The connection ended before a byte of the answer."""


class Connection:
    """One kept-alive connection to the upstream."""

    __slots__ = ("idle_until", "reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.used = reader, writer, False
        self.idle_until = 0.0

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Response:
    """The status and headers of an answer."""

    __slots__ = ("headers", "status")

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers


async def read_head(connection: Connection) -> Response:
    """The status and headers of the next answer on ``connection``; ``ConnectionClosed``
    when it ended before a byte of it."""
    try:
        head = await connection.reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            raise ConnectionClosed("the upstream closed the connection") from None
        raise ConnectionResetError("the upstream closed the connection mid-answer") from None
    except (ConnectionResetError, BrokenPipeError):
        raise ConnectionClosed("the upstream reset the connection") from None
    except asyncio.LimitOverrunError:
        raise UpstreamError(
            "protocol",
            "The upstream sent oversized HTTP headers.",
            detail=f"The answer's HTTP head was over {HEAD_LIMIT * 16} bytes.",
        ) from None
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise UpstreamError(
            "protocol",
            "The upstream's answer was not HTTP/1.1.",
            detail=f"Status line: {lines[0][:200]!r}",
        ) from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if status == 100:
        return await read_head(connection)
    return Response(status, headers)


_TLS: list[ssl.SSLContext] = []


def tls_context() -> ssl.SSLContext:
    """The TLS settings of the SDK path's client (httpx2's, environment ignored), made once."""
    if not _TLS:
        _TLS.append(httpx2.create_ssl_context(trust_env=False))
    return _TLS[0]


def keepalive_seconds(value: str) -> float | None:
    """How long an idle connection may be reused, from ``Keep-Alive: timeout=N``."""
    for part in value.split(","):
        name, _, number = part.strip().partition("=")
        if name.strip().lower() == "timeout":
            try:
                return max(float(number) - KEEPALIVE_MARGIN, 0.0)
            except ValueError:
                return None
    return None


def snippet(body: bytes) -> str:
    text = body[:300].decode("utf-8", "replace").strip()
    return text + ("…" if len(body) > 300 else "")


# --- HTTP/1.1 bodies ------------------------------------------------------------------------


def too_large() -> UpstreamError:
    return UpstreamError(
        "protocol",
        "The upstream's answer was too large.",
        detail=f"The answer body was over {ANSWER_MAX_BYTES} bytes.",
    )


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    length = headers.get("content-length")
    if length is not None and "chunked" not in headers.get("transfer-encoding", "").lower():
        try:
            size = int(length)
        except ValueError:
            raise UpstreamError(
                "protocol",
                "The upstream sent a bad Content-Length.",
                detail=f"Content-Length: {length[:50]!r}",
            ) from None
        if size > ANSWER_MAX_BYTES:
            raise too_large()
        return await _exactly(reader, size)
    parts: list[bytes] = []
    total = 0
    async for chunk in body_chunks(reader, headers):
        total += len(chunk)
        if total > ANSWER_MAX_BYTES:
            raise too_large()
        parts.append(chunk)
    return b"".join(parts)


async def _exactly(reader: asyncio.StreamReader, size: int) -> bytes:
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise ConnectionResetError("the upstream closed the connection mid-answer") from None


async def body_chunks(
    reader: asyncio.StreamReader, headers: dict[str, str]
) -> AsyncIterator[bytes]:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            try:
                line = await reader.readuntil(b"\r\n")
                size = int(line.split(b";", 1)[0].strip(), 16)
            except (asyncio.IncompleteReadError, ValueError, asyncio.LimitOverrunError):
                raise ConnectionResetError("the upstream broke a chunked answer") from None
            if size == 0:
                with contextlib.suppress(asyncio.IncompleteReadError):
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                return
            if size > ANSWER_MAX_BYTES:
                raise too_large()
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
