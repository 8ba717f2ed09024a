"""A pool of open upstream MCP sessions, one per (connection, credential).

The MCP transport forwards every ``tools/call`` (and resource read, prompt
get, completion) through here, so a call costs one upstream request: no new
session, no ``tools/list``. Each session is owned by a background task,
because the SDK's ``Client`` must be entered and left in the same task; calls
from any task share it, bounded per upstream by a semaphore.

- A session that breaks (the upstream closed it, the process died, the
  server forgot our session id) is dropped and reopened. A request is sent
  again on the new session only when it provably never reached the server (the
  session was already dead before it was sent, the connection could not be
  opened, or the server answered 404 for the session); a request that may have
  reached it fails with an error instead, so no tool runs twice for one call.
- The call timeout bounds the whole call, the wait for one of the session's
  ``max_concurrency`` slots included: a connection's hanging tools delay its
  other calls by at most that, then those fail as busy, never sent.
- Opening failures back off (0.5 s doubling to 30 s): meanwhile calls fail
  fast with the last error instead of piling onto a dead server.
- Sessions idle longer than ``idle_seconds`` are closed by a reaper.
- Upstream change notifications (``notifications/*/list_changed`` in the
  handshake era, the ``subscriptions/listen`` stream in 2026-07-28) are
  passed to ``on_list_changed`` with the open client, so the catalog can be
  refreshed at once.

Results come back as the upstream's JSON (``dict``), untouched, for the
transport to relay unchanged. The pool imports nothing from the ORM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.subscriptions import ListenNotSupportedError
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ToolsListChanged
from mcp_types import CONNECTION_CLOSED, HEADER_MISMATCH, REQUEST_TIMEOUT
from pydantic import TypeAdapter

from connections.streamable import (
    NotificationFn,
    NotSent,
    SessionLost,
    StreamableChannel,
    UpstreamJsonRpcError,
    channel_for,
)
from connections.upstream import (
    SessionWire,
    UpstreamError,
    UpstreamTarget,
    describe_failure,
    upstream_session,
)

logger = logging.getLogger(__name__)

# The SDK types this as a model; a TypeAdapter is accepted too and keeps the JSON as is.
_RAW_RESULT: Final[Any] = TypeAdapter(dict[str, Any])
BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 30.0

ListChangedFn = Callable[[str, str, Client], Awaitable[None]]
"""``on_list_changed(connection_id, kind, client)``; kind is tools, resources or prompts."""


# Longest wait, after an SDK-path answer, for progress callbacks that started before it.
PROGRESS_SETTLE_SECONDS: Final = 1.0


class _ProgressGate:
    """The SDK runs each progress callback in a task of its own, so the answer can
    overtake the last progress notification on its way to the client, which then
    drops it (progress after the result is for no request). Every callback that
    started before the answer arrived (the SDK spawned it before reading the answer,
    so it ran first) is finished before the answer is returned."""

    __slots__ = ("_idle", "_progress", "_running")

    def __init__(self, progress: ProgressFnT) -> None:
        self._progress = progress
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self._running += 1
        self._idle.clear()
        try:
            await self._progress(progress, total, message)
        finally:
            self._running -= 1
            if not self._running:
                self._idle.set()

    async def settled(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()


class UpstreamCallError(Exception):
    """The upstream answered a request with a JSON-RPC error; relay it as such."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


@dataclass(eq=False)
class _Session:
    connection_id: str
    target: UpstreamTarget
    semaphore: asyncio.Semaphore
    client: Client | None = None
    # Streamable HTTP: the lean request path on the open session (None: the SDK's).
    channel: StreamableChannel | None = None
    wire: SessionWire | None = None
    task: asyncio.Task[None] | None = None
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    opening: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_used: float = 0.0
    in_flight: int = 0
    failures: int = 0
    retry_at: float = 0.0
    last_error: UpstreamError | None = None
    relisted: bool = False
    opened: int = 0


class UpstreamPool:
    """Open upstream sessions shared by every call on this event loop."""

    def __init__(
        self,
        *,
        idle_seconds: float = 300.0,
        max_concurrency: int = 32,
        on_list_changed: ListChangedFn | None = None,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_concurrency = max_concurrency
        self.on_list_changed = on_list_changed
        self._sessions: dict[tuple[str, tuple[Any, ...]], _Session] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # --- public calls ------------------------------------------------------------

    async def call_tool(
        self,
        *,
        connection_id: str,
        target: UpstreamTarget,
        name: str,
        arguments: dict[str, Any] | None,
        meta: dict[str, Any] | None = None,
        progress: ProgressFnT | None = None,
        on_notification: NotificationFn | None = None,
    ) -> dict[str, Any]:
        """``tools/call`` upstream; the result JSON as the upstream sent it.

        ``on_notification`` receives the notifications other than progress (logs,
        for one) that the server sends on this call's answer stream."""
        params: dict[str, Any] = {"name": name}
        if arguments is not None:
            params["arguments"] = arguments
        if meta:
            params["_meta"] = meta

        def build() -> Any:
            return types.CallToolRequest(
                params=types.CallToolRequestParams(
                    name=name, arguments=arguments, _meta=cast(types.RequestParamsMeta | None, meta)
                )
            )

        return await self._request(
            connection_id,
            target,
            "tools/call",
            params,
            build,
            progress=progress,
            on_notification=on_notification,
        )

    async def read_resource(
        self, *, connection_id: str, target: UpstreamTarget, uri: str
    ) -> dict[str, Any]:
        def build() -> Any:
            return types.ReadResourceRequest(params=types.ReadResourceRequestParams(uri=uri))

        return await self._request(connection_id, target, "resources/read", {"uri": uri}, build)

    async def get_prompt(
        self,
        *,
        connection_id: str,
        target: UpstreamTarget,
        name: str,
        arguments: dict[str, str] | None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"name": name}
        if arguments is not None:
            params["arguments"] = arguments

        def build() -> Any:
            return types.GetPromptRequest(
                params=types.GetPromptRequestParams(name=name, arguments=arguments)
            )

        return await self._request(connection_id, target, "prompts/get", params, build)

    async def complete(
        self, *, connection_id: str, target: UpstreamTarget, params: dict[str, Any]
    ) -> dict[str, Any]:
        # Validated on either path: a malformed completion never reaches the upstream.
        typed = types.CompleteRequestParams.model_validate(params)
        wire = typed.model_dump(by_alias=True, mode="json", exclude_none=True)

        def build() -> Any:
            return types.CompleteRequest(params=typed)

        return await self._request(connection_id, target, "completion/complete", wire, build)

    async def ping(self, *, connection_id: str, target: UpstreamTarget) -> dict[str, Any]:
        return await self._request(connection_id, target, "ping", None, types.PingRequest)

    def stats(self) -> dict[str, Any]:
        """Open sessions and their use, for diagnostics and tests."""
        return {
            "sessions": sum(1 for s in self._sessions.values() if s.client is not None),
            "opened": sum(s.opened for s in self._sessions.values()),
            "in_flight": sum(s.in_flight for s in self._sessions.values()),
        }

    async def close_connection(self, connection_id: str) -> None:
        """Close every session of a connection (it was edited or deleted)."""
        for key, session in list(self._sessions.items()):
            if session.connection_id == connection_id:
                del self._sessions[key]
                await self._close(session)

    async def aclose(self) -> None:
        """Close every session (shutdown)."""
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(self._close(session) for session in sessions))

    # --- the request path -----------------------------------------------------------

    async def _request(
        self,
        connection_id: str,
        target: UpstreamTarget,
        method: str,
        params: dict[str, Any] | None,
        build: Callable[[], Any],
        *,
        progress: ProgressFnT | None = None,
        on_notification: NotificationFn | None = None,
    ) -> dict[str, Any]:
        """Send one request on the session (the lean channel when there is one, else
        the SDK's), within the call timeout from the moment it asks for a slot."""
        session = self._session_for(connection_id, target)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + target.call_timeout
        try:
            if session.semaphore.locked():
                async with asyncio.timeout(target.call_timeout):
                    await session.semaphore.acquire()
            else:
                await session.semaphore.acquire()  # a free slot: no timer to arm
        except TimeoutError:
            raise UpstreamError(
                "timeout",
                f"The upstream {target.display} is busy: no call slot came free within "
                f"{target.call_timeout:g} s.",
                detail=f"All {self.max_concurrency} concurrent call slots of this connection "
                f"were taken for the whole call timeout ({target.call_timeout:g} s); "
                f"the {method} was not sent.",
            ) from None
        session.in_flight += 1
        try:
            return await self._send(
                session, target, method, params, build, progress, on_notification, deadline
            )
        finally:
            session.in_flight -= 1
            session.last_used = time.monotonic()
            session.semaphore.release()

    async def _send(
        self,
        session: _Session,
        target: UpstreamTarget,
        method: str,
        params: dict[str, Any] | None,
        build: Callable[[], Any],
        progress: ProgressFnT | None,
        on_notification: NotificationFn | None,
        deadline: float,
    ) -> dict[str, Any]:
        """One request on the open session, opening it again once when it provably
        never reached the server."""
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            client = await self._open(session)
            session.last_used = time.monotonic()
            channel, wire = session.channel, session.wire
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise UpstreamError(
                    "timeout",
                    f"The upstream {target.display} did not answer within "
                    f"{target.call_timeout:g} s.",
                    detail=f"The call timeout ran out before the {method} could be sent.",
                )
            if channel is None and wire is not None and wire.ended:
                # The session died while idle (a process exited, a stream ended):
                # nothing was sent on it, so open a new one.
                await self._drop(session, client)
                continue
            try:
                if channel is not None:
                    return await channel.request(
                        method,
                        params,
                        progress=progress,
                        on_notification=on_notification,
                        timeout=remaining,
                    )
                gate = _ProgressGate(progress) if progress is not None else None
                result: dict[str, Any] = await client.session.send_request(
                    build(),
                    _RAW_RESULT,
                    request_read_timeout_seconds=remaining,
                    progress_callback=gate,
                )
                if gate is not None:
                    await gate.settled(PROGRESS_SETTLE_SECONDS)
                return result
            except (MCPError, UpstreamJsonRpcError) as error:
                code, message, data = _error_parts(error)
                if code == REQUEST_TIMEOUT:
                    raise UpstreamError(
                        "timeout",
                        f"The upstream {target.display} did not answer within "
                        f"{target.call_timeout:g} s.",
                        detail=f"No answer to {method} within the call timeout.",
                    ) from None
                if code == CONNECTION_CLOSED:
                    await self._drop(session, client)
                    raise UpstreamError(
                        "interrupted",
                        f"The session with {target.display} ended before its answer to "
                        f"{method} came; the request had been sent, so it was not sent again.",
                        detail=f"The SDK session reported: {message}",
                    ) from None
                if code == HEADER_MISMATCH and attempt == 1 and not session.relisted:
                    # 2026-07-28 servers may need the tool listed first (x-mcp-header
                    # mirroring): once per session, not per call.
                    session.relisted = True
                    await self._relist_tools(client, target)
                    continue
                raise UpstreamCallError(code, message, data) from None
            except UpstreamError:
                raise
            except Exception as error:
                # The transport failed under the session (connection refused, the
                # server lost our session id): reopen once when nothing was sent.
                await self._drop(session, client)
                if attempt == 1 and _never_sent(error):
                    continue
                if isinstance(error, SessionLost):
                    raise UpstreamError(
                        "unreachable",
                        f"The upstream {target.display} closed the session.",
                        detail="The server answered 404 for the session right after "
                        "opening it again: it does not keep the sessions it gives.",
                    ) from None
                failure = describe_failure(
                    error, target=target, http_status=None, timeout=target.call_timeout
                )
                if not _never_sent(error) and failure.kind == "unreachable":
                    failure = UpstreamError(
                        "interrupted",
                        f"The connection to {target.display} failed after {method} was "
                        "sent; it was not sent again.",
                        detail=f"{type(error).__name__}: {error}",
                    )
                raise failure from None
        raise UpstreamError(
            "unreachable",
            f"The upstream {target.display} closed the session.",
            detail="The session ended twice before the request could be sent.",
        )

    def _session_for(self, connection_id: str, target: UpstreamTarget) -> _Session:
        key = (connection_id, target.pool_key)
        session = self._sessions.get(key)
        if session is None:
            session = _Session(
                connection_id=connection_id,
                target=target,
                semaphore=asyncio.Semaphore(self.max_concurrency),
            )
            self._sessions[key] = session
            self._ensure_reaper()
        return session

    async def _open(self, session: _Session) -> Client:
        if session.client is not None:
            return session.client
        async with session.opening:
            if session.client is not None:
                return session.client
            now = time.monotonic()
            if session.last_error is not None and now < session.retry_at:
                wait = session.retry_at - now
                raise UpstreamError(
                    session.last_error.kind,
                    f"{session.last_error.message} (retrying in {max(wait, 0.1):.1f} s)",
                )
            ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
            session.closing = asyncio.Event()
            session.relisted = False
            session.task = asyncio.create_task(self._own(session, ready))
            try:
                client = await ready
            except UpstreamError as error:
                session.failures += 1
                session.last_error = error
                backoff = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (session.failures - 1))
                session.retry_at = time.monotonic() + backoff
                raise
            session.failures = 0
            session.last_error = None
            session.opened += 1
            session.client = client
            return client

    async def _own(self, session: _Session, ready: asyncio.Future[Client]) -> None:
        """Hold one upstream session open until asked to close or it breaks."""
        connection_id = session.connection_id

        async def on_message(message: Any) -> None:
            kind = _list_changed_kind(message)
            if kind is not None and session.client is not None:
                self._notify_changed(connection_id, kind, session.client)

        wire = session.wire = SessionWire()
        channel: StreamableChannel | None = None
        try:
            async with upstream_session(
                session.target, message_handler=on_message, wire=wire
            ) as client:
                if session.target.transport == "streamable-http":
                    connection_id_ = session.connection_id
                    channel = session.channel = channel_for(
                        client,
                        session.target,
                        wire,
                        on_list_changed=lambda kind: self._notify_changed(
                            connection_id_, kind, client
                        ),
                    )
                ready.set_result(client)
                listener = asyncio.create_task(self._listen(connection_id, client))
                try:
                    await session.closing.wait()
                finally:
                    listener.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await listener
        except UpstreamError as error:
            if not ready.done():
                ready.set_exception(error)
            else:
                logger.info("Upstream session with %s ended: %s", session.target.display, error)
        except asyncio.CancelledError:
            if not ready.done():
                ready.set_exception(UpstreamError("unreachable", "The session was cancelled."))
        except Exception as error:  # never let a background task die silently
            if not ready.done():
                ready.set_exception(
                    UpstreamError("protocol", f"Could not open the session: {error}")
                )
            else:
                logger.warning("Upstream session with %s failed", session.target.display)
        finally:
            session.client = None
            if channel is not None:
                channel.close()
                if session.channel is channel:
                    session.channel = None

    async def _listen(self, connection_id: str, client: Client) -> None:
        """2026-07-28: change events arrive on a ``subscriptions/listen`` stream."""
        capabilities = client.server_capabilities
        tools = bool(capabilities.tools and capabilities.tools.list_changed)
        resources = bool(capabilities.resources and capabilities.resources.list_changed)
        prompts = bool(capabilities.prompts and capabilities.prompts.list_changed)
        if not (tools or resources or prompts):
            return
        delay = BACKOFF_FIRST
        while True:
            try:
                async with client.listen(
                    tools_list_changed=tools,
                    resources_list_changed=resources,
                    prompts_list_changed=prompts,
                ) as subscription:
                    delay = BACKOFF_FIRST
                    async for event in subscription:
                        kind = _event_kind(event)
                        if kind is not None:
                            self._notify_changed(connection_id, kind, client)
            except ListenNotSupportedError:
                return  # handshake era: notifications come through on_message
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.info("Listen stream of connection %s dropped", connection_id)
            await asyncio.sleep(delay)
            delay = min(BACKOFF_MAX, delay * 2)

    def _notify_changed(self, connection_id: str, kind: str, client: Client) -> None:
        if self.on_list_changed is None:
            return
        task = asyncio.create_task(self._run_list_changed(connection_id, kind, client))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_list_changed(self, connection_id: str, kind: str, client: Client) -> None:
        assert self.on_list_changed is not None
        try:
            await self.on_list_changed(connection_id, kind, client)
        except Exception:
            logger.exception("Refreshing the catalog of connection %s failed", connection_id)

    async def _relist_tools(self, client: Client, target: UpstreamTarget) -> None:
        cursor: str | None = None
        with contextlib.suppress(Exception):
            for _ in range(100):
                page = await client.list_tools(cursor=cursor, cache_mode="refresh")
                cursor = page.next_cursor
                if not cursor:
                    return

    async def _drop(self, session: _Session, client: Client) -> None:
        """Forget a broken client so the next call opens a new session."""
        if session.client is client:
            session.client = None
            if session.channel is not None:
                session.channel.close()
                session.channel = None
            session.closing.set()

    async def _close(self, session: _Session) -> None:
        session.closing.set()
        task = session.task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=5)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
            except Exception:
                logger.debug("Closing an upstream session failed", exc_info=True)
        session.client = None

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap())

    async def _reap(self) -> None:
        """Close sessions nobody used for ``idle_seconds``."""
        interval = max(0.05, min(self.idle_seconds / 4, 30.0))
        while self._sessions:
            await asyncio.sleep(interval)
            cutoff = time.monotonic() - self.idle_seconds
            for key, session in list(self._sessions.items()):
                if session.in_flight == 0 and session.last_used < cutoff:
                    self._sessions.pop(key, None)
                    await self._close(session)


def _never_sent(error: BaseException) -> bool:
    """Whether a failure proves the request never reached the upstream (safe to resend):
    the connection could not be opened, or the server answered 404 for the session
    (it processed nothing)."""
    return isinstance(error, NotSent | SessionLost | httpx2.ConnectError)


def _error_parts(error: MCPError | UpstreamJsonRpcError) -> tuple[int, str, Any]:
    if isinstance(error, UpstreamJsonRpcError):
        return error.code, error.message, error.data
    return error.error.code, error.error.message, error.error.data


def _list_changed_kind(message: Any) -> str | None:
    if isinstance(message, types.ToolListChangedNotification):
        return "tools"
    if isinstance(message, types.ResourceListChangedNotification):
        return "resources"
    if isinstance(message, types.PromptListChangedNotification):
        return "prompts"
    return None


def _event_kind(event: Any) -> str | None:
    if isinstance(event, ToolsListChanged):
        return "tools"
    if isinstance(event, ResourcesListChanged):
        return "resources"
    if isinstance(event, PromptsListChanged):
        return "prompts"
    return None


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, UpstreamPool] = (
    weakref.WeakKeyDictionary()
)
_POOL_FACTORY: Callable[[], UpstreamPool] = UpstreamPool


def pool_factory_set(factory: Callable[[], UpstreamPool]) -> None:
    """How ``upstream_pool()`` builds the pool of a new event loop (set at startup)."""
    global _POOL_FACTORY
    _POOL_FACTORY = factory


def upstream_pool() -> UpstreamPool:
    """The pool of the running event loop (one per loop: sessions are bound to their loop)."""
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = _POOL_FACTORY()
    return pool
