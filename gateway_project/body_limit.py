"""Request bodies capped before they are buffered, on every route, signed in or not.

Two guards apply the same per-route cap (``body_cap_for``): the MCP transport's
routes ``GATEWAY_MCP_MAX_BODY_BYTES``, everything else ``GATEWAY_MAX_BODY_BYTES``.

- ``daphne_body_limit_install`` hooks daphne's request object. Twisted receives the
  *whole* body (into memory, or a temporary file above 100 kB) before daphne hands
  the request to any ASGI application, and daphne then queues all of it in memory
  at once: no ASGI middleware can refuse a body under daphne before it is buffered.
  The hook answers 413 when the headers announce a ``Content-Length`` over the cap,
  or as soon as the bytes of a chunked body pass it, and reads no more of it.
- ``BodyLimitMiddleware`` wraps the ASGI application (``asgi.py``) for any other
  server, and for daphne is the second line: it answers 413 on ``Content-Length``
  without calling the application, and stops a streamed body at the cap.

Either way the answer is 413 ``{"error": "..."}`` and the application never sees the body.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

from django.conf import settings

from connections import wirejson

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

# After answering 413 the server keeps reading (and dropping) what the client still
# sends for this long before closing: closing a socket with unread data sends a TCP
# reset, which can destroy the answer before the client reads it.
LINGER_SECONDS: Final = 2.0


def body_cap_for(path: str) -> int:
    """The largest body accepted on ``path`` (the path part of the URL, no query)."""
    if path.startswith("/mcp") and "/.well-known/" not in path:
        return int(settings.GATEWAY_MCP_MAX_BODY_BYTES)
    return int(settings.GATEWAY_MAX_BODY_BYTES)


def too_large_body(cap: int) -> bytes:
    return wirejson.dumps(
        {"error": f"The request body is too large: this URL accepts at most {cap} bytes."}
    )


# --- the ASGI middleware -----------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Answers 413 for bodies over the route's cap without passing them on."""

    def __init__(self, app: Asgi) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = body_cap_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await _answer_too_large(send, cap)
            return
        received = 0
        started = False
        refused = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    refused = True
                    if not started:
                        await _answer_too_large(send, cap)
                    # The application sees a client that went away, and stops.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if refused:
                return  # the 413 is the answer
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _answer_too_large(send: Send, cap: int) -> None:
    body = too_large_body(cap)
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- the daphne hook ---------------------------------------------------------------------


def daphne_body_limit_install() -> None:
    """Make daphne's requests refuse a body over the route's cap as it arrives."""
    from daphne.http_protocol import WebRequest

    if getattr(WebRequest, "_gateway_body_limit", False):
        return
    original_got_length = WebRequest.gotLength
    original_handle_chunk = WebRequest.handleContentChunk
    original_request_received = WebRequest.requestReceived

    def gotLength(self: Any, length: int | None) -> None:
        target = getattr(self.channel, "_path", b"") or b""
        path = target.split(b"?", 1)[0].decode("latin-1")
        self._gateway_cap = body_cap_for(path)
        self._gateway_received = 0
        self._gateway_refused = False
        if length is not None and length > self._gateway_cap:
            _daphne_refuse(self, path)
            return
        original_got_length(self, length)

    def handleContentChunk(self: Any, data: bytes) -> None:
        if self._gateway_refused:
            return
        self._gateway_received += len(data)
        if self._gateway_received > self._gateway_cap:
            _daphne_refuse(self, "")
            return
        original_handle_chunk(self, data)

    def requestReceived(self: Any, command: bytes, path: bytes, version: bytes) -> None:
        # A refused body that ended within the bytes already being parsed: no application.
        if getattr(self, "_gateway_refused", False):
            return
        original_request_received(self, command, path, version)

    WebRequest.gotLength = gotLength
    WebRequest.requestReceived = requestReceived
    WebRequest.handleContentChunk = handleContentChunk
    WebRequest._gateway_body_limit = True


def _daphne_refuse(request: Any, path: str) -> None:
    """Answer 413 on the raw connection, then drop the rest of the body unread."""
    from twisted.internet import reactor

    request._gateway_refused = True
    channel = request.channel
    transport = channel.transport
    if transport is None:
        return
    body = too_large_body(request._gateway_cap)
    transport.write(
        b"HTTP/1.1 413 Content Too Large\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n" + body
    )
    # Nothing more of this connection reaches the HTTP parser (nor the application).
    channel.dataReceived = lambda data: None
    logger.info(
        "Refused a request body over %d bytes%s",
        request._gateway_cap,
        f" on {path}" if path else "",
    )
    half_close = getattr(transport, "loseWriteConnection", None)
    if half_close is None:
        transport.loseConnection()
        return
    half_close()
    # (The interface is typed without self, which shifts its arguments for mypy.)
    cast(Any, reactor).callLater(LINGER_SECONDS, transport.abortConnection)
