"""The gateway as an MCP client of its upstream servers (async, no ORM).

``UpstreamTarget`` carries everything needed to reach one server (built from a
``Connection`` by ``upstream_target_for``); ``upstream_session`` opens an MCP
session with the official SDK over Streamable HTTP (letting the SDK negotiate
between the 2026-07-28 revision and the ``initialize`` handshake) or legacy
HTTP+SSE, through the guarded outbound HTTP client; every failure comes out as
an ``UpstreamError`` with a kind and a message a person understands.
"""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
from mcp import Client
from mcp.client.session import MessageHandlerFnT
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from connections.outbound import UpstreamAddressRefused, outbound_http_client

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpstreamTarget:
    """Where and how to reach one upstream server. ``headers`` hold secrets: never log them."""

    url: str
    transport: str  # "streamable-http" | "sse"
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    connect_timeout: float = 10.0
    call_timeout: float = 60.0

    @property
    def display(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


class UpstreamError(Exception):
    """Reaching or talking to an upstream failed.

    ``kind`` is one of: refused, unreachable, tls, timeout, unauthorized,
    forbidden, not_found, http, protocol.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


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


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text[:200]


@asynccontextmanager
async def upstream_session(
    target: UpstreamTarget, *, message_handler: MessageHandlerFnT | None = None
) -> AsyncIterator[Client]:
    """An open MCP session with the upstream; failures to open it raise ``UpstreamError``.

    Errors raised by the caller's own code inside the block pass through unchanged.
    """
    last_status: list[int] = []

    async def record_status(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            last_status.append(response.status_code)

    timeout = httpx2.Timeout(target.call_timeout, connect=target.connect_timeout)
    hooks = {"response": [record_status]}

    def client_factory(
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        return outbound_http_client(
            headers={**(headers or {}), **target.headers},
            timeout=httpx2.Timeout(target.call_timeout, connect=target.connect_timeout),
            event_hooks=hooks,
        )

    http_client: httpx2.AsyncClient | None = None
    if target.transport == "sse":
        transport = sse_client(
            target.url,
            headers=dict(target.headers),
            timeout=target.connect_timeout,
            sse_read_timeout=max(300.0, target.call_timeout),
            httpx_client_factory=client_factory,
        )
        mode = "legacy"
    else:
        http_client = outbound_http_client(
            headers=target.headers, timeout=timeout, event_hooks=hooks
        )
        transport = streamable_http_client(target.url, http_client=http_client)
        mode = "auto"
    # Every request, the opening handshake included, is bounded by the read timeout;
    # no outer cancel scope, which must not straddle the SDK's task groups.
    client = Client(
        transport,
        mode=mode,
        cache=None,
        message_handler=message_handler,
        read_timeout_seconds=target.call_timeout,
    )
    try:
        async with client:
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
            error, target=target, http_status=status, timeout=target.call_timeout
        )
        if failure.kind == "protocol":
            logger.warning("MCP session with %s failed", target.display, exc_info=error)
        raise failure from None
    finally:
        if http_client is not None:
            await http_client.aclose()


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
