"""The legacy HTTP+SSE client transport (2024-11-05), for the SDK's ``Client``.

It replaces the SDK's ``sse_client``, which reads the event stream through
httpx2's ``EventSource`` with a fixed 1 MiB cap per event and no way to change
it: a tool result over 1 MiB broke the stream, the session died, and the pool
sent the call again. Here the stream is read by the event-stream rules
(``eventstream``) up to ``ANSWER_MAX_BYTES``, messages are POSTed to the
``endpoint`` the server announced (same origin only; redirects are not
followed), each in its own task so
slow requests do not hold up others, and a POST the server refuses fails that
request at once instead of leaving it to time out. The transport is used as
``Client(legacy_sse_client(...), mode="legacy")``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import urljoin, urlsplit

import anyio
import httpx2
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client._transport import TransportStreams
from mcp.shared.message import SessionMessage
from mcp_types import INTERNAL_ERROR, ErrorData, JSONRPCError, JSONRPCRequest

from connections.eventstream import ANSWER_MAX_BYTES, EventStreamParser

logger = logging.getLogger(__name__)


class LegacySseError(Exception):
    """The server's event stream could not be used (no endpoint, another origin)."""


@asynccontextmanager
async def legacy_sse_client(
    url: str,
    *,
    client: httpx2.AsyncClient,
    read_timeout: float,
    max_event_bytes: int = ANSWER_MAX_BYTES,
) -> AsyncIterator[TransportStreams]:
    """Open the event stream at ``url``, wait for its ``endpoint`` event, then yield the
    (read, write) streams of ``SessionMessage`` the SDK's ``Client`` expects."""
    read_writer: MemoryObjectSendStream[SessionMessage | Exception]
    read_stream: MemoryObjectReceiveStream[SessionMessage | Exception]
    read_writer, read_stream = anyio.create_memory_object_stream(0)
    write_stream: MemoryObjectSendStream[SessionMessage]
    write_reader: MemoryObjectReceiveStream[SessionMessage]
    write_stream, write_reader = anyio.create_memory_object_stream(0)
    timeout = httpx2.Timeout(client.timeout.connect, read=read_timeout)
    headers = {"accept": "text/event-stream", "cache-control": "no-store"}
    async with client.stream("GET", url, headers=headers, timeout=timeout) as response:
        response.raise_for_status()
        content_type = response.headers.get("content-type", "").partition(";")[0].strip()
        if content_type.lower() != "text/event-stream":
            raise LegacySseError(
                f"the SSE URL answered {content_type or 'no content type'}, not text/event-stream"
            )
        parser = EventStreamParser(max_event_bytes=max_event_bytes)
        chunks = response.aiter_bytes()
        early: list[SessionMessage] = []
        endpoint = await _endpoint(url, chunks, parser, early)

        async def read_events() -> None:
            async with read_writer:
                try:
                    for first in early:
                        await read_writer.send(first)
                    async for chunk in chunks:
                        for event in parser.feed(chunk):
                            try:
                                message = _message(event.event, event.data)
                            except ValueError as error:  # pydantic's ValidationError too
                                # One bad message is the SDK's to report; the stream goes on.
                                await read_writer.send(error)
                                continue
                            if message is not None:
                                await read_writer.send(message)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    pass
                except Exception as error:
                    # The stream broke (or an event was over the cap): the session ends.
                    logger.info("The SSE stream of %s ended: %s", _where(url), error)

        async def post(message: SessionMessage) -> None:
            body = message.message.model_dump(by_alias=True, mode="json", exclude_unset=True)
            failure: str | None = None
            try:
                answer = await client.post(endpoint, json=body)
                if answer.status_code >= 300:
                    failure = f"the server answered the POST with HTTP {answer.status_code}"
            except httpx2.HTTPError as error:
                failure = f"POST failed: {type(error).__name__}: {error}"
            if failure is not None and isinstance(message.message, JSONRPCRequest):
                error_message = JSONRPCError(
                    jsonrpc="2.0",
                    id=message.message.id,
                    error=ErrorData(code=INTERNAL_ERROR, message=failure),
                )
                with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                    await read_writer.send(SessionMessage(error_message))

        async def write_messages() -> None:
            async with write_reader, anyio.create_task_group() as posts:
                async for message in write_reader:
                    posts.start_soon(post, message)

        async with read_stream, write_stream, anyio.create_task_group() as group:
            group.start_soon(read_events)
            group.start_soon(write_messages)
            try:
                yield read_stream, write_stream
            finally:
                group.cancel_scope.cancel()


async def _endpoint(
    url: str,
    chunks: AsyncIterator[bytes],
    parser: EventStreamParser,
    early: list[SessionMessage],
) -> str:
    """The POST URL of the ``endpoint`` event, which must come first and keep the origin."""
    async for chunk in chunks:
        for event in parser.feed(chunk):
            if event.event == "endpoint":
                endpoint = urljoin(url, event.data.decode("utf-8", "replace").strip())
                here, there = urlsplit(url), urlsplit(endpoint)
                if (here.scheme, here.netloc) != (there.scheme, there.netloc):
                    raise LegacySseError(
                        f"the server's endpoint {_where(endpoint)} is on another origin"
                    )
                return endpoint
            message = _message(event.event, event.data)
            if message is not None:
                early.append(message)
    raise LegacySseError("the SSE stream ended before its endpoint event")


def _message(event: str, data: bytes) -> SessionMessage | None:
    if event != "message" or not data:
        return None  # keep-alives, other event types
    parsed: Any = types.jsonrpc_message_adapter.validate_json(data, by_name=False)
    return SessionMessage(parsed)


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
