"""The gateway as an MCP client of its upstream servers (async, no ORM).

``UpstreamTarget`` carries everything needed to reach one server (built from a
``Connection`` by ``upstream_target_for``); ``upstream_session`` opens an MCP
session with the official SDK over Streamable HTTP (letting the SDK negotiate
between the 2026-07-28 revision and the ``initialize`` handshake) or legacy
HTTP+SSE, through the guarded outbound HTTP client, or over stdio with a child
process (its secrets as environment variables, its stderr kept in memory only);
every failure comes out as an ``UpstreamError`` with a kind and a message a
person understands.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final, TextIO, cast
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client._transport import TransportStreams
from mcp.client.session import MessageHandlerFnT
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from connections.eventstream import ANSWER_MAX_BYTES
from connections.legacy_sse import legacy_sse_client
from connections.outbound import UpstreamAddressRefused, outbound_http_client

logger = logging.getLogger(__name__)

STDIO: Final = "stdio"
DETAIL_MAX: Final = 1000


# Keys the pool's digests of credentials: stable for the life of the process (all an
# in-memory pool needs), and a digest seen in a log cannot be brute-forced offline.
_POOL_KEY_SECRET: Final = secrets.token_bytes(32)


@dataclass(frozen=True)
class UpstreamTarget:
    """Where and how to reach one upstream server.

    An HTTP server (``transport`` "streamable-http" or "sse") is a ``url``; a stdio
    server is a ``command`` with ``args``, started as a child process. ``headers``
    and ``env`` hold secrets: never log them.
    """

    url: str
    transport: str  # "streamable-http" | "sse" | "stdio"
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    connect_timeout: float = 10.0
    call_timeout: float = 60.0
    command: str = ""
    args: tuple[str, ...] = ()
    # Extra environment of the child, merged by the SDK over a minimal safe environment
    # (HOME, LOGNAME, PATH, SHELL, TERM, USER), not over the gateway's own.
    env: dict[str, str] = field(default_factory=dict, repr=False)
    # The stored credential the Authorization header came from (a user's own, or the
    # shared OAuth one), so a 401 can refresh it; not part of ``pool_key``.
    credential_id: str = ""
    refreshable: bool = False  # an OAuth credential with tokens the gateway can renew
    personal: bool = False  # the credential is the user's own (messages tell them to fix it)
    expires_at: float | None = None  # its access token's expiry (epoch seconds)

    @property
    def is_stdio(self) -> bool:
        return self.transport == STDIO

    @property
    def display(self) -> str:
        if self.is_stdio:
            return f"'{self.command}'"
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"

    @cached_property
    def pool_key(self) -> tuple[str, str, str, tuple[str, ...], float, float, str]:
        """A hashable identity of the server and its credential, for keying pooled sessions.

        ``(transport, url, command, args, connect_timeout, call_timeout, digest)``
        where the digest is an HMAC-SHA256 of the headers and environment under a
        per-process key: equal credentials give equal keys within the process,
        and the key never holds a secret in clear. Computed once per target: the
        transport reuses its cached targets for every call.
        """
        canonical = json.dumps(
            {"headers": self.headers, "env": self.env}, sort_keys=True, separators=(",", ":")
        )
        digest = hmac.new(_POOL_KEY_SECRET, canonical.encode(), hashlib.sha256).hexdigest()
        return (
            self.transport,
            self.url,
            self.command,
            tuple(self.args),
            self.connect_timeout,
            self.call_timeout,
            digest,
        )


class UpstreamError(Exception):
    """Reaching or talking to an upstream failed.

    ``kind`` is one of: refused, unreachable, tls, timeout, unauthorized,
    forbidden, not_found, http, protocol; for stdio servers also exited (the
    process ended) and disabled (the operator has turned stdio off); credential
    (unreadable), needs_credential (the user has none for a personal-mode server)
    and needs_reauth (a sign-in expired or was revoked), whose messages are meant
    for the person the client acts for; interrupted (the call reached the server but
    its answer was lost: it is never sent again, since it may have run).
    """

    def __init__(self, kind: str, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        # What exactly went wrong on the wire (the HTTP status and the start of the
        # body, the parse error, the session problem), for admins: the connection
        # page and the activity log show it; clients get only the short message.
        self.detail = detail[:DETAIL_MAX]


@dataclass
class CatalogSnapshot:
    """What a server offers, as fetched in one session."""

    server_name: str
    server_version: str
    protocol_version: str
    instructions: str
    tools: list[dict[str, Any]]
    resources: list[dict[str, Any]]
    resource_templates: list[dict[str, Any]]
    prompts: list[dict[str, Any]]


def definition_hash(definition: dict[str, Any]) -> str:
    """SHA-256 of a definition in canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for sub in error.exceptions for leaf in _leaves(sub)]
    return [error]


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def describe_failure(
    error: BaseException, *, target: UpstreamTarget, http_status: int | None, timeout: float
) -> UpstreamError:
    """Turn whatever the SDK or the network raised into an ``UpstreamError``."""
    if isinstance(error, UpstreamError):
        return error
    if target.is_stdio:
        return _describe_stdio_failure(error, target=target, timeout=timeout)
    if http_status == 401:
        return UpstreamError(
            "unauthorized", "The upstream answered 401 Unauthorized: check the connection's token."
        )
    if http_status == 403:
        return UpstreamError(
            "forbidden", "The upstream answered 403 Forbidden: the credential lacks access."
        )
    if http_status == 404:
        return UpstreamError(
            "not_found",
            "The upstream answered 404 Not Found: check the server URL (it often ends in /mcp, "
            "or /sse for the SSE transport).",
        )
    leaves = [cause for leaf in _leaves(error) for cause in _chain(leaf)]
    for leaf in leaves:
        if isinstance(leaf, UpstreamAddressRefused):
            return UpstreamError("refused", str(leaf))
    for leaf in leaves:
        if isinstance(leaf, ssl.SSLError):
            return UpstreamError("tls", f"TLS with {target.display} failed: {leaf.reason or leaf}.")
    for leaf in leaves:
        if isinstance(leaf, TimeoutError | httpx2.TimeoutException):
            return UpstreamError(
                "timeout", f"The upstream {target.display} did not answer within {timeout:g} s."
            )
    for leaf in leaves:
        if isinstance(leaf, httpx2.ConnectError | ConnectionError):
            return UpstreamError(
                "unreachable",
                f"Could not connect to {target.display} ({_short(leaf) or 'connection failed'}).",
            )
    if http_status is not None and http_status >= 400:
        return UpstreamError("http", f"The upstream answered HTTP {http_status}.")
    for leaf in leaves:
        if isinstance(leaf, httpx2.HTTPError):
            return UpstreamError(
                "unreachable", f"HTTP error talking to {target.display}: {_short(leaf)}"
            )
    for leaf in leaves:
        if isinstance(leaf, MCPError):
            return UpstreamError(
                "protocol", f"The upstream's MCP answer was an error: {_short(leaf)}"
            )
    first = leaves[0] if leaves else error
    return UpstreamError(
        "protocol",
        f"Talking MCP to {target.display} failed: {type(first).__name__}: {_short(first)}",
    )


def _describe_stdio_failure(
    error: BaseException, *, target: UpstreamTarget, timeout: float
) -> UpstreamError:
    leaves = [cause for leaf in _leaves(error) for cause in _chain(leaf)]
    for leaf in leaves:
        # Raised by the spawn itself, before any process exists.
        if isinstance(leaf, FileNotFoundError):
            return UpstreamError(
                "unreachable", f"Could not start {target.display}: command not found."
            )
        if isinstance(leaf, PermissionError):
            return UpstreamError(
                "unreachable",
                f"Could not start {target.display}: permission denied (is it an executable?).",
            )
    for leaf in leaves:
        if isinstance(leaf, TimeoutError) or (
            isinstance(leaf, MCPError) and leaf.code == REQUEST_TIMEOUT
        ):
            return UpstreamError(
                "timeout",
                f"The server process {target.display} did not answer within {timeout:g} s.",
            )
    for leaf in leaves:
        if (isinstance(leaf, MCPError) and leaf.code == CONNECTION_CLOSED) or isinstance(
            leaf, anyio.EndOfStream | anyio.BrokenResourceError | anyio.ClosedResourceError
        ):
            return UpstreamError(
                "exited", f"The server process {target.display} ended the session."
            )
    for leaf in leaves:
        if isinstance(leaf, OSError):
            return UpstreamError(
                "unreachable", f"Could not start {target.display}: {leaf.strerror or _short(leaf)}."
            )
    for leaf in leaves:
        if isinstance(leaf, MCPError):
            return UpstreamError(
                "protocol", f"The upstream's MCP answer was an error: {_short(leaf)}"
            )
    first = leaves[0] if leaves else error
    return UpstreamError(
        "protocol",
        f"Talking MCP to {target.display} failed: {type(first).__name__}: {_short(first)}",
    )


class _ChildStderr:
    """The stderr of a stdio server, kept in memory in a capped buffer.

    The child may print its configuration, secrets included: its stderr is never
    logged nor written to disk. A thread drains the pipe (so a chatty child never
    blocks on it); ``last_line`` gives the end of it, with the secrets masked, to
    explain a process that stopped.
    """

    LIMIT = 8192

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        # The SDK hands this file's descriptor to the child as its stderr.
        self.file: TextIO = os.fdopen(write_fd, "w")
        self._tail = bytearray()
        self._truncated = False
        self._lock = threading.Lock()
        self._reader = threading.Thread(
            target=self._drain, args=(read_fd,), name="mcp-stdio-stderr", daemon=True
        )
        self._reader.start()

    def _drain(self, read_fd: int) -> None:
        try:
            while chunk := os.read(read_fd, 4096):
                with self._lock:
                    self._tail += chunk
                    if len(self._tail) > self.LIMIT:
                        del self._tail[: -self.LIMIT]
                        self._truncated = True
        finally:
            os.close(read_fd)

    def close(self) -> None:
        """Drop the gateway's copy of the write end, so the reader ends with the child."""
        if not self.file.closed:
            self.file.close()

    async def last_line(self, *, secrets: Iterable[str]) -> str:
        """The child's last line of error output (secrets masked), once it has ended."""
        self.close()
        await anyio.to_thread.run_sync(self._reader.join, 1.0)
        with self._lock:
            text = bytes(self._tail).decode("utf-8", "replace")
            truncated = self._truncated
        for secret in sorted(set(secrets), key=len, reverse=True):
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if truncated and len(lines) > 1:
            lines = lines[1:]  # the first may be a cut-off piece, a secret's tail included
        elif truncated:
            return ""
        return lines[-1][:300] if lines else ""


@asynccontextmanager
async def _stdio_streams(
    target: UpstreamTarget, *, errlog: TextIO, handshake: anyio.CancelScope
) -> AsyncIterator[TransportStreams]:
    """The SDK's stdio transport, with the handshake bounded by ``handshake``'s deadline.

    The scope sits inside the transport, so it nests properly with the SDK's task
    groups; once the session is open the caller lifts its deadline.
    """
    params = StdioServerParameters(
        command=target.command, args=list(target.args), env=dict(target.env)
    )
    async with stdio_client(params, errlog=errlog) as streams:
        with handshake:
            yield streams
        if handshake.cancelled_caught:
            raise TimeoutError(f"no MCP handshake within {target.connect_timeout:g} s")


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text[:200]


@dataclass
class SessionWire:
    """What the opening of a session left on the wire, for the pool.

    ``session_id``: the ``Mcp-Session-Id`` of a successful ``initialize`` answer
    (Streamable HTTP), never one from any other answer: a server may stamp an id
    on its refusal of the SDK's ``server/discover`` probe and then forget it.
    ``ended``: the transport's read side has ended, so the session is dead and a
    request sent from now on would reach nothing.
    """

    session_id: str | None = None
    ended: bool = False


class _WatchedReadStream:
    """The transport's read stream, noting in ``wire.ended`` when it ends."""

    def __init__(self, inner: Any, wire: SessionWire) -> None:
        self._inner, self._wire = inner, wire

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._wire.ended = True
            raise

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._wire.ended = True
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedReadStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@asynccontextmanager
async def _watched(transport: Any, wire: SessionWire) -> AsyncIterator[TransportStreams]:
    async with transport as (read_stream, write_stream):
        yield cast(Any, _WatchedReadStream(read_stream, wire)), write_stream


def _is_initialize(request: httpx2.Request) -> bool:
    """Whether a request carried the ``initialize`` handshake (its JSON body says so)."""
    if request.method != "POST":
        return False
    try:
        body = request.content
    except httpx2.RequestNotRead:
        return False
    if b"initialize" not in body:
        return False
    try:
        return bool(json.loads(body).get("method") == "initialize")
    except (ValueError, AttributeError):
        return False


@asynccontextmanager
async def upstream_session(
    target: UpstreamTarget,
    *,
    message_handler: MessageHandlerFnT | None = None,
    wire: SessionWire | None = None,
) -> AsyncIterator[Client]:
    """An open MCP session with the upstream; failures to open it raise ``UpstreamError``.

    Errors raised by the caller's own code inside the block pass through unchanged.
    ``wire`` receives the ``Mcp-Session-Id`` the server gave to ``initialize``
    (Streamable HTTP) and learns when the transport ends.
    """
    last_status: list[int] = []

    async def record_status(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            last_status.append(response.status_code)
        elif (
            wire is not None
            and response.status_code < 300
            and "mcp-session-id" in response.headers
            and _is_initialize(response.request)
        ):
            wire.session_id = response.headers["mcp-session-id"]

    timeout = httpx2.Timeout(target.call_timeout, connect=target.connect_timeout)
    hooks = {"response": [record_status]}

    http_client: httpx2.AsyncClient | None = None
    stderr: _ChildStderr | None = None
    handshake = anyio.CancelScope(deadline=anyio.current_time() + target.connect_timeout)
    transport: Any
    if target.is_stdio:
        stderr = _ChildStderr()
        transport = _stdio_streams(target, errlog=stderr.file, handshake=handshake)
        mode = "auto"
    elif target.transport == "sse":
        http_client = outbound_http_client(
            headers=target.headers, timeout=timeout, event_hooks=hooks
        )
        transport = legacy_sse_client(
            target.url, client=http_client, read_timeout=max(300.0, target.call_timeout)
        )
        mode = "legacy"
    else:
        http_client = outbound_http_client(
            headers=target.headers, timeout=timeout, event_hooks=hooks
        )
        transport = streamable_http_client(
            target.url, http_client=http_client, max_sse_event_size=ANSWER_MAX_BYTES
        )
        mode = "auto"
    if wire is not None:
        transport = _watched(transport, wire)
    # Every request, the opening handshake included, is bounded by the read timeout;
    # no outer cancel scope, which must not straddle the SDK's task groups.
    client = Client(
        transport,
        mode=mode,
        cache=None,
        message_handler=message_handler,
        read_timeout_seconds=target.call_timeout,
    )
    opened = False
    try:
        async with client:
            opened = True
            handshake.deadline = math.inf
            if stderr is not None:
                stderr.close()
            yield client
    except UpstreamError:
        raise
    except BaseException as error:
        if isinstance(error, anyio.get_cancelled_exc_class() | KeyboardInterrupt | SystemExit):
            raise
        inner = [leaf for leaf in _leaves(error) if isinstance(leaf, UpstreamError)]
        if inner:
            raise inner[0] from None
        if not isinstance(error, Exception | BaseExceptionGroup):
            raise
        status = last_status[-1] if last_status else None
        failure = describe_failure(
            error,
            target=target,
            http_status=status,
            # The stdio handshake is bounded by the connect timeout (see _stdio_streams).
            timeout=target.connect_timeout
            if target.is_stdio and not opened
            else target.call_timeout,
        )
        if stderr is not None and failure.kind == "exited" and not opened:
            failure = await _explain_exit(target, stderr)
        if not failure.detail and not target.is_stdio:
            # (A stdio server's errors may quote its output, secrets included: none.)
            failure.detail = _failure_detail(error, statuses=last_status, opened=opened)
        if failure.kind == "protocol" and not target.is_stdio:
            logger.warning("MCP session with %s failed", target.display, exc_info=error)
        elif failure.kind == "protocol":
            # The traceback of a stdio session may quote the child's output: kind only.
            logger.warning("MCP session with %s failed: %s", target.display, failure.message)
        raise failure from None
    finally:
        if http_client is not None:
            await http_client.aclose()
        if stderr is not None:
            stderr.close()


_QUERY = re.compile(r"\?[^\s'\"]*")


def _failure_detail(error: BaseException, *, statuses: list[int], opened: bool) -> str:
    """What failed, for admins: the HTTP statuses seen and each distinct error in the
    chain (type and first line; query strings of URLs left out, they may hold keys)."""
    parts = ["while opening the session" if not opened else "on the open session"]
    if statuses:
        parts.append("HTTP " + ", ".join(str(status) for status in statuses[-3:]))
    seen: set[str] = set()
    for leaf in _leaves(error):
        for cause in _chain(leaf):
            text = f"{type(cause).__name__}: {_QUERY.sub('?…', _short(cause))}"
            if text not in seen:
                seen.add(text)
                parts.append(text)
    return "; ".join(parts)[:DETAIL_MAX]


async def _explain_exit(target: UpstreamTarget, stderr: _ChildStderr) -> UpstreamError:
    said = await stderr.last_line(secrets=target.env.values())
    return UpstreamError(
        "exited",
        f"The server process {target.display} exited before completing the MCP handshake"
        + (f"; its last error output: {said}" if said else " (no error output)."),
    )


async def _all_pages(fetch: Callable[[str | None], Awaitable[Any]], attribute: str) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(1000):  # a server that never stops paging is a protocol error
        page = await fetch(cursor)
        items.extend(getattr(page, attribute))
        cursor = page.next_cursor
        if not cursor:
            return items
    raise UpstreamError("protocol", "The upstream kept paging past 1000 pages.")


def _dump(item: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = item.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


async def catalog_fetch_with(client: Client, *, call_timeout: float) -> CatalogSnapshot:
    """Everything the server offers, all pages, through an open session."""
    capabilities = client.server_capabilities
    info = client.server_info

    async def pages(
        fetch: Callable[[str | None], Awaitable[Any]], attribute: str
    ) -> list[dict[str, Any]]:
        with anyio.fail_after(call_timeout):
            return [_dump(item) for item in await _all_pages(fetch, attribute)]

    tools: list[dict[str, Any]] = []
    resources: list[dict[str, Any]] = []
    templates: list[dict[str, Any]] = []
    prompts: list[dict[str, Any]] = []
    if capabilities is None or capabilities.tools is not None:
        tools = await pages(lambda c: client.list_tools(cursor=c), "tools")
    if capabilities is not None and capabilities.resources is not None:
        resources = await pages(lambda c: client.list_resources(cursor=c), "resources")
        templates = await pages(
            lambda c: client.list_resource_templates(cursor=c), "resource_templates"
        )
    if capabilities is not None and capabilities.prompts is not None:
        prompts = await pages(lambda c: client.list_prompts(cursor=c), "prompts")
    return CatalogSnapshot(
        server_name=(info.name if info else "")[:200],
        server_version=(info.version if info else "")[:100],
        protocol_version=str(client.protocol_version or "")[:32],
        instructions=client.instructions or "",
        tools=tools,
        resources=resources,
        resource_templates=templates,
        prompts=prompts,
    )


async def catalog_fetch(target: UpstreamTarget) -> CatalogSnapshot:
    """Open a session, fetch the whole catalog, close it."""
    async with upstream_session(target) as client:
        return await catalog_fetch_with(client, call_timeout=target.call_timeout)
