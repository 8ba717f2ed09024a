"""The MCP transport: serves ``/mcp/<slug>`` to AI clients under daphne.

A plain ASGI application, routed by Channels (``gateway_project/asgi.py``), for
every request of every revision on one URL:

- Streamable HTTP, handshake era (2025-03-26 … 2025-11-25): ``initialize``
  opens a session whose id is *signed* (endpoint, principal, version), so any
  instance can serve its next request with no shared session lookup; a
  DELETE marks it ended in the shared cache and tells every instance through
  the channel layer. GET opens the stream that carries ``list_changed``.
- Streamable HTTP, 2026-07-28: stateless; ``_meta`` and the mirrored
  ``MCP-Protocol-Version``/``Mcp-Method``/``Mcp-Name`` headers are checked per
  request; ``subscriptions/listen`` is the change stream.
- Legacy HTTP+SSE (2024-11-05): ``GET /mcp/<slug>/sse`` and
  ``POST /mcp/<slug>/messages?session_id=…``; a POST served by another
  instance reaches the stream through the channel layer.

Per-process caches keep the hot path free of database round trips: the served
view of an endpoint (dropped on ``endpoint.changed``), token lookups (one
second, so a revoked token stops within a second everywhere), upstream targets.
The ``Hub`` is this process's single channel-layer listener: change events,
session ends and messages for the legacy SSE streams it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.http.request import split_domain_port, validate_host
from mcp.shared.inbound import (
    decode_header_value,
    find_invalid_x_mcp_header,
    validate_mcp_param_headers,
    x_mcp_header_map,
)

from audit import recorder as audit_recorder
from connections import wirejson
from connections.pool import pool_factory_set
from connections.upstream import UpstreamError, UpstreamTarget
from endpoints import provider
from endpoints.events import SESSIONS_GROUP, endpoint_group
from endpoints.mcp import jsonrpc
from endpoints.mcp.engine import CallContext, Engine, ServedView
from endpoints.mcp.sse import SSE_KEEPALIVE, sse_event
from endpoints.provider import LoadedEndpoint, Principal
from gateway_project import strictjson
from gateway_project.lru import LruCache

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

SESSION_SALT: Final = "mcp-session"
SESSION_ENDED_TTL: Final = 7 * 24 * 3600
SESSION_CACHE_SIZE: Final = 10_000  # per cache and process; a few MiB at most
SESSION_ID_MAX_LENGTH: Final = 2048  # session_create's ids are a few hundred characters
TOKEN_TTL: Final = 1.0
USAGE_FLUSH_SECONDS: Final = 5.0
COUNTED_METHODS: Final = frozenset({"tools/call", "resources/read", "prompts/get"})
TARGET_TTL: Final = 5.0
SHARED_TARGET: Final = "*"  # the target cache's user key of a shared-mode connection
VIEW_TTL: Final = 60.0
KEEPALIVE_SECONDS: Final = 15.0
GATEWAY_VERSION: Final = "1.0"
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]
_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def _dumps(message: Any) -> bytes:
    return wirejson.dumps(message)


# --- per-process state --------------------------------------------------------------


@dataclass
class _Stream:
    """An open SSE stream of this process that pushes reach."""

    endpoint_id: str
    session_id: str | None
    principal: str = ""  # Principal.key: a revocation closes the principal's streams
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)
    listen_id: Any = None  # 2026-07-28 subscriptions/listen: the request id
    wants: frozenset[str] = frozenset({"tools", "resources", "prompts"})


class Hub:
    """This process's caches and its one channel-layer listener."""

    def __init__(self) -> None:
        self.views: dict[str, tuple[float, LoadedEndpoint | None]] = {}
        self.tokens: dict[str, tuple[float, Principal | None]] = {}
        self.access: dict[tuple[str, str], tuple[float, str]] = {}
        # Upstream targets by (connection, user id) for personal-mode servers, and by
        # (connection, SHARED_TARGET) for the others (one entry for every user).
        self.targets: dict[tuple[str, Any], tuple[float, UpstreamTarget | UpstreamError]] = {}
        # Bounded: the ids come from callers (only validly signed ones get here).
        self.ended_sessions: LruCache[str, bool] = LruCache(SESSION_CACHE_SIZE)
        # Loads in flight (one per cache key) and a counter bumped by every change
        # event, so a load that started before a change never stores a stale answer.
        self._loading: dict[tuple[str, Any], asyncio.Future[Any]] = {}
        self.generation = 0
        self.streams: dict[str, _Stream] = {}
        # Calls per principal since the last flush (the sessions pages show them).
        self.usage: dict[str, int] = {}
        self._usage_flusher: asyncio.Task[None] | None = None
        self.channel: str | None = None
        self._watched: dict[str, float] = {}
        self._listener: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self.engine = Engine(
            provider.GatewayBackend(self.target, self.target_forget),
            server_version=GATEWAY_VERSION,
        )

    async def start(self) -> None:
        if self._listener is not None:
            return
        async with self._start_lock:
            if self._listener is not None:
                return
            layer = get_channel_layer()
            if layer is not None:
                self.channel = await layer.new_channel("mcp.hub.")
                await layer.group_add(SESSIONS_GROUP, self.channel)
            self._listener = asyncio.create_task(self._listen())

    async def watch(self, endpoint_id: str) -> None:
        """Join the endpoint's change group (again every hour: groups expire)."""
        now = time.monotonic()
        if self._watched.get(endpoint_id, 0.0) > now:
            return
        self._watched[endpoint_id] = now + 3600
        layer = get_channel_layer()
        if layer is not None and self.channel is not None:
            await layer.group_add(endpoint_group(endpoint_id), self.channel)

    async def _listen(self) -> None:
        layer = get_channel_layer()
        if layer is None or self.channel is None:
            return
        while True:
            try:
                message = await layer.receive(self.channel)
                self.dispatch(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("MCP hub: channel layer receive failed", exc_info=True)
                await asyncio.sleep(1.0)

    def dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "endpoint.changed":
            endpoint_id = str(message.get("endpoint_id"))
            kinds = set(message.get("kinds") or ())
            self.endpoint_changed(endpoint_id, kinds)
        elif kind == "mcp.session.ended":
            self.session_ended(str(message.get("session_id")))
        elif kind == "mcp.principal.revoked":
            self.principal_revoked(str(message.get("principal")))
        elif kind == "mcp.credentials.changed":
            user_id = message.get("user_id")
            self.credentials_changed(
                str(message.get("connection_id")), user_id if isinstance(user_id, int) else None
            )
        elif kind == "mcp.deliver":
            stream = self.streams.get(str(message.get("stream")))
            if stream is not None:
                stream.queue.put_nowait(message.get("message"))

    def endpoint_changed(self, endpoint_id: str, kinds: set[str]) -> None:
        self.generation += 1
        self._loading = {k: v for k, v in self._loading.items() if k[0] == "token"}
        for slug, (_, loaded) in list(self.views.items()):
            if loaded is None or loaded.id == endpoint_id:
                self.views.pop(slug, None)
        if "access" in kinds or "deleted" in kinds:
            self.access = {k: v for k, v in self.access.items() if k[1] != endpoint_id}
            self.targets.clear()
        lists = {"tools", "resources", "prompts"} & kinds
        if "endpoint" in kinds:
            lists = {"tools", "resources", "prompts"}
        for stream in list(self.streams.values()):
            if stream.endpoint_id != endpoint_id:
                continue
            if "deleted" in kinds:
                stream.queue.put_nowait(None)
                continue
            for name in sorted(lists & stream.wants):
                params = (
                    {"_meta": {jsonrpc.META_SUBSCRIPTION_ID: stream.listen_id}}
                    if stream.listen_id is not None
                    else None
                )
                stream.queue.put_nowait(
                    jsonrpc.notification(f"notifications/{name}/list_changed", params)
                )

    def session_ended(self, session_id: str) -> None:
        self.ended_sessions[session_id] = True
        for stream in list(self.streams.values()):
            if stream.session_id == session_id:
                stream.queue.put_nowait(None)

    def principal_revoked(self, key: str) -> None:
        """A token or authorization was revoked: forget it and close its streams now."""
        self.tokens = {
            digest: entry
            for digest, entry in self.tokens.items()
            if entry[1] is None or entry[1].key != key
        }
        self.access = {k: v for k, v in self.access.items() if k[0] != key}
        for stream in list(self.streams.values()):
            if stream.principal == key:
                stream.queue.put_nowait(None)

    def credentials_changed(self, connection_id: str, user_id: int | None) -> None:
        """A credential of the connection changed (``user_id`` None: all of its users')."""
        self.generation += 1
        self._loading = {
            k: v for k, v in self._loading.items() if k[0] != "target" or k[1][0] != connection_id
        }
        for key in list(self.targets):
            if key[0] == connection_id and (user_id is None or key[1] in (user_id, SHARED_TARGET)):
                self.targets.pop(key, None)

    def note_use(self, principal: Principal) -> None:
        """Count a call for the principal; a background task writes the counts in batches."""
        self.usage[principal.key] = self.usage.get(principal.key, 0) + 1
        if self._usage_flusher is None or self._usage_flusher.done():
            self._usage_flusher = asyncio.create_task(self._flush_usage())

    async def _flush_usage(self) -> None:
        await asyncio.sleep(USAGE_FLUSH_SECONDS)
        counts, self.usage = self.usage, {}
        try:
            await database_sync_to_async(provider.usage_record)(counts=counts)
        except Exception:
            logger.warning("MCP hub: could not record usage counts", exc_info=True)

    # --- cached loads -------------------------------------------------------------------

    async def _once(self, key: tuple[str, Any], load: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``load`` once for every request that misses the same cache entry at once.

        Without this, an entry expiring under load sends every concurrent request to
        the database (16 lookups at concurrency 16, each a thread hop).
        """
        future = self._loading.get(key)
        if future is None:
            future = asyncio.ensure_future(load())
            self._loading[key] = future

            def forget(done: asyncio.Future[Any], key: tuple[str, Any] = key) -> None:
                if self._loading.get(key) is done:
                    del self._loading[key]
                if not done.cancelled():
                    done.exception()  # retrieved here: waiters may all have gone

            future.add_done_callback(forget)
        return await asyncio.shield(future)

    async def view(self, slug: str) -> LoadedEndpoint | None:
        now = time.monotonic()
        cached = self.views.get(slug)
        if cached is not None and cached[0] > now:
            return cached[1]
        generation = self.generation
        loaded: LoadedEndpoint | None = await self._once(
            ("view", slug), lambda: database_sync_to_async(provider.endpoint_load)(slug=slug)
        )
        if generation == self.generation:  # no change event arrived meanwhile
            self.views[slug] = (now + VIEW_TTL, loaded)
        if loaded is not None:
            await self.watch(loaded.id)
        return loaded

    async def principal(self, raw: str) -> Principal | None:
        key = hashlib.sha256(raw.encode()).hexdigest()
        now = time.monotonic()
        cached = self.tokens.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        principal: Principal | None = await self._once(
            ("token", key),
            lambda: database_sync_to_async(provider.principal_from_token)(raw),
        )
        if len(self.tokens) > 10_000:
            self.tokens.clear()
        self.tokens[key] = (now + TOKEN_TTL, principal)
        return principal

    async def endpoint_access(self, principal: Principal, endpoint_id: str) -> str:
        key = (f"{principal.token_kind}:{principal.token_id}", endpoint_id)
        now = time.monotonic()
        cached = self.access.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        generation = self.generation
        verdict: str = await self._once(
            ("access", key),
            lambda: database_sync_to_async(provider.endpoint_access)(
                principal=principal, endpoint_id=endpoint_id
            ),
        )
        if len(self.access) > 10_000:
            self.access.clear()
        if generation == self.generation:
            self.access[key] = (now + TOKEN_TTL, verdict)
        return verdict

    async def target(
        self, connection_id: str, user_id: int | None = None
    ) -> UpstreamTarget | UpstreamError:
        """How to reach a connection for a user: shared-mode servers share one entry."""
        now = time.monotonic()
        cached = self.targets.get((connection_id, SHARED_TARGET))
        if cached is None or cached[0] <= now:
            cached = self.targets.get((connection_id, user_id))
        if cached is not None and cached[0] > now:
            return cached[1]
        generation = self.generation
        target, personal = await self._once(
            ("target", (connection_id, user_id)),
            lambda: database_sync_to_async(provider.connection_target_load)(
                connection_id=connection_id, user_id=user_id
            ),
        )
        if generation == self.generation:
            if len(self.targets) > 10_000:
                self.targets.clear()
            key = (connection_id, user_id if personal else SHARED_TARGET)
            self.targets[key] = (now + TARGET_TTL, target)
        return target

    def target_forget(self, connection_id: str, user_id: int | None) -> None:
        """Drop a cached target (its credential was just refreshed)."""
        self.targets.pop((connection_id, user_id), None)
        self.targets.pop((connection_id, SHARED_TARGET), None)

    async def is_session_ended(self, session_id: str) -> bool:
        known = self.ended_sessions.get(session_id)
        if known is not None:
            return known
        ended = bool(await cache.aget(f"mcp:ended:{_digest(session_id)}"))
        self.ended_sessions[session_id] = ended
        return ended

    async def end_session(self, session_id: str) -> None:
        await cache.aset(f"mcp:ended:{_digest(session_id)}", True, SESSION_ENDED_TTL)
        self.session_ended(session_id)
        layer = get_channel_layer()
        if layer is not None:
            await layer.group_send(
                SESSIONS_GROUP, {"type": "mcp.session.ended", "session_id": session_id}
            )

    async def deliver(self, channel: str, stream_id: str, message: dict[str, Any]) -> None:
        """Send a message to a legacy SSE stream, here or on another instance."""
        if channel == self.channel or channel == "":
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.queue.put_nowait(message)
            return
        layer = get_channel_layer()
        if layer is not None:
            await layer.send(
                channel, {"type": "mcp.deliver", "stream": stream_id, "message": message}
            )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


_HUBS: dict[asyncio.AbstractEventLoop, Hub] = {}


async def hub() -> Hub:
    """The hub of the running event loop (one per process under daphne)."""
    loop = asyncio.get_running_loop()
    found = _HUBS.get(loop)
    if found is None:
        for stale in [other for other in _HUBS if other.is_closed()]:
            del _HUBS[stale]
        pool_factory_set(provider.upstream_pool_build)
        found = _HUBS[loop] = Hub()
    await found.start()
    return found


# --- HTTP helpers -----------------------------------------------------------------------


@dataclass
class Request:
    """The parts of an HTTP request the transport reads."""

    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, list[str]]
    scope: Scope

    @classmethod
    def from_scope(cls, scope: Scope) -> Request:
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        return cls(
            method=scope.get("method", "GET"),
            path=scope.get("path", ""),
            headers=headers,
            query=parse_qs(scope.get("query_string", b"").decode("latin-1")),
            scope=scope,
        )

    def accepts(self, media: str) -> bool:
        accept = self.headers.get("accept", "")
        return media in accept or "*/*" in accept or not accept


async def _respond(
    send: Send,
    status: int,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    all_headers = list(headers or [])
    if body:
        all_headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def _json(
    send: Send, status: int, message: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _respond(send, status, _dumps(message), [*_JSON_HEADERS, *(extra or [])])


async def _rpc_error(send: Send, status: int, code: int, message: str, data: Any = None) -> None:
    await _json(send, status, jsonrpc.error(None, code, message, data))


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None when it exceeds ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _allowed_origins() -> set[str]:
    origins = {origin.rstrip("/") for origin in settings.GATEWAY_ALLOWED_ORIGINS}
    public = urlsplit(settings.GATEWAY_PUBLIC_URL)
    origins.add(f"{public.scheme}://{public.netloc}")
    return origins


def _origin_allowed(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True
    origin = origin.rstrip("/")
    if origin in _allowed_origins():
        return True
    # The gateway's own pages on the host the request was sent to.
    host = request.headers.get("host", "")
    return origin in (f"https://{host}", f"http://{host}")


_HOSTS_CHECKED: dict[tuple[str, tuple[str, ...]], bool] = {}


def _host_allowed(request: Request) -> bool:
    host = request.headers.get("host", "")
    allowed = tuple(settings.ALLOWED_HOSTS)
    verdict = _HOSTS_CHECKED.get((host, allowed))
    if verdict is None:
        domain, _port = split_domain_port(host)
        verdict = bool(domain) and validate_host(domain, allowed)
        if len(_HOSTS_CHECKED) > 1000:
            _HOSTS_CHECKED.clear()
        _HOSTS_CHECKED[(host, allowed)] = verdict
    return verdict


def _resource_of(slug: str, via_domain: bool) -> tuple[str, str]:
    """The endpoint URL this request's client uses, and its protected-resource metadata URL."""
    if via_domain:
        base = f"https://{slug}.{settings.GATEWAY_ENDPOINT_DOMAIN}"
        return f"{base}/mcp", f"{base}/.well-known/oauth-protected-resource/mcp"
    base = settings.GATEWAY_PUBLIC_URL
    return f"{base}/mcp/{slug}", f"{base}/.well-known/oauth-protected-resource/mcp/{slug}"


def _challenge(slug: str, via_domain: bool, error: str | None = None) -> list[tuple[bytes, bytes]]:
    _resource, metadata = _resource_of(slug, via_domain)
    parts = [f'resource_metadata="{metadata}"', 'scope="mcp"']
    if error:
        parts.insert(0, f'error="{error}"')
    return [(b"www-authenticate", ("Bearer " + ", ".join(parts)).encode())]


# --- sessions (handshake era and legacy SSE) ------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """What a signed session id carries."""

    endpoint_id: str
    principal: str
    protocol_version: str
    client: dict[str, Any]
    channel: str = ""  # legacy SSE: the hub channel holding the stream
    stream: str = ""  # legacy SSE: the stream on that hub


def session_create(session: Session) -> str:
    payload = {
        "e": session.endpoint_id,
        "p": session.principal,
        "v": session.protocol_version,
        "c": session.client,
        "n": secrets.token_urlsafe(12),
    }
    if session.stream:
        payload["h"], payload["s"] = session.channel, session.stream
    return signing.dumps(payload, salt=SESSION_SALT, compress=True)


# Verified session ids of this process, most recently used kept. Ids that fail the
# signature check are not kept: a caller could send endless made-up ones.
_SESSION_CACHE: LruCache[str, Session] = LruCache(SESSION_CACHE_SIZE)


def session_read(session_id: str) -> Session | None:
    """The session a signed id carries, or None when it was tampered with."""
    found = _SESSION_CACHE.get(session_id)
    if found is not None:
        return found
    if len(session_id) > SESSION_ID_MAX_LENGTH:
        return None  # longer than any id session_create makes: not worth a signature check
    try:
        payload = signing.loads(session_id, salt=SESSION_SALT)
        session = Session(
            endpoint_id=str(payload["e"]),
            principal=str(payload["p"]),
            protocol_version=str(payload["v"]),
            client=dict(payload.get("c") or {}),
            channel=str(payload.get("h", "")),
            stream=str(payload.get("s", "")),
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None
    _SESSION_CACHE[session_id] = session
    return session


# --- the application ------------------------------------------------------------------------


class _Refusal(Exception):
    def __init__(self, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None):
        self.status, self.body, self.headers = status, body, headers or []


async def mcp_app(scope: Scope, receive: Receive, send: Send) -> None:
    """ASGI entry point for ``/mcp/<slug>``, ``/mcp/<slug>/sse`` and ``…/messages``."""
    if scope["type"] != "http":
        return
    scope["gateway.started"] = time.perf_counter()  # activity log: total latency
    request = Request.from_scope(scope)
    kwargs = scope.get("url_route", {}).get("kwargs", {})
    via_domain = not kwargs.get("slug")
    slug = kwargs.get("slug") or _slug_from_host(request)
    tail = kwargs.get("tail", "")
    principal: Principal | None = None
    dispatched = False
    try:
        if not _host_allowed(request):
            raise _Refusal(400, {"error": "Bad Request: this host is not served here."})
        if not _origin_allowed(request):
            raise _Refusal(
                403, jsonrpc.error(None, jsonrpc.INVALID_REQUEST, "Forbidden: origin not allowed")
            )
        if not slug:
            raise _Refusal(404, {"error": "No MCP endpoint here."})
        the_hub = await hub()
        principal = await _authenticate(the_hub, request, slug, via_domain)
        loaded = await the_hub.view(slug)
        if loaded is None:
            raise _Refusal(404, {"error": f"No MCP endpoint named {slug!r}."})
        verdict = await the_hub.endpoint_access(principal, loaded.id)
        if verdict == "not_found":
            raise _Refusal(404, {"error": f"No MCP endpoint named {slug!r}."})
        if verdict == "forbidden":
            raise _Refusal(
                403, {"error": "You are not allowed to use this endpoint; ask an admin."}
            )
        dispatched = True
        if tail == "sse":
            await _legacy_sse_stream(the_hub, request, receive, send, loaded, principal)
        elif tail == "messages":
            await _legacy_message(the_hub, request, receive, send, loaded, principal)
        elif request.method == "POST":
            await _post(the_hub, request, receive, send, loaded, principal)
        elif request.method == "GET":
            await _get_stream(the_hub, request, receive, send, loaded, principal)
        elif request.method == "DELETE":
            await _delete(the_hub, request, send, loaded, principal)
        else:
            raise _Refusal(
                405, {"error": "Method not allowed."}, [(b"allow", b"GET, POST, DELETE")]
            )
    except _Refusal as refusal:
        # Activity log: a refused tools/call, resources/read or prompts/get; after
        # dispatch, only once the body was parsed (it names the method).
        parsed = scope.get("gateway.message")
        if not dispatched or parsed is not None:
            await audit_recorder.refusal_record(
                request=request,
                receive=receive,
                status=refusal.status,
                body=refusal.body,
                principal=principal,
                slug=slug,
                hub=hub,
                message=parsed,
            )
        await _json(send, refusal.status, refusal.body, refusal.headers)


def _slug_from_host(request: Request) -> str:
    domain = settings.GATEWAY_ENDPOINT_DOMAIN
    if not domain:
        return ""
    host, _port = split_domain_port(request.headers.get("host", ""))
    suffix = "." + domain.lower()
    if host.endswith(suffix) and host.count(".") == suffix.count("."):
        return host[: -len(suffix)]
    return ""


async def _authenticate(the_hub: Hub, request: Request, slug: str, via_domain: bool) -> Principal:
    if "access_token" in request.query:
        # MCP's authorization spec: tokens MUST NOT travel in the URI query (they end up
        # in logs and histories). Refused whatever the header says (RFC 6750 §3.1).
        raise _Refusal(
            400,
            {"error": "Access tokens are not accepted in the URL: send Authorization: Bearer."},
            _challenge(slug, via_domain, "invalid_request"),
        )
    header = request.headers.get("authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise _Refusal(
            401,
            {"error": "Authentication required: send Authorization: Bearer <token>."},
            _challenge(slug, via_domain),
        )
    principal = await the_hub.principal(raw.strip())
    if principal is None:
        raise _Refusal(
            401,
            {"error": "The access token is invalid, expired or revoked."},
            _challenge(slug, via_domain, "invalid_token"),
        )
    # An OAuth token works only on the endpoint URL it was issued for (RFC 8707 audience).
    if principal.resource is not None and principal.resource != _resource_of(slug, via_domain)[0]:
        raise _Refusal(
            401,
            {"error": "The access token was issued for another endpoint."},
            _challenge(slug, via_domain, "invalid_token"),
        )
    return principal


def _era_of(request: Request, message: dict[str, Any]) -> str | None:
    """The protocol version a request speaks when it says so (2026-07-28), else None."""
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if isinstance(meta, dict) and jsonrpc.META_PROTOCOL_VERSION in meta:
        return str(meta[jsonrpc.META_PROTOCOL_VERSION])
    header = request.headers.get("mcp-protocol-version")
    if header in jsonrpc.MODERN_VERSIONS:
        return header
    return None


async def _post(
    the_hub: Hub,
    request: Request,
    receive: Receive,
    send: Send,
    loaded: LoadedEndpoint,
    principal: Principal,
) -> None:
    body = await _read_body(receive, settings.GATEWAY_MCP_MAX_BODY_BYTES)
    if body is None:
        raise _Refusal(413, jsonrpc.error(None, jsonrpc.INVALID_REQUEST, "Request body too large"))
    try:
        message = strictjson.loads(body)
    except strictjson.JsonRefused as refused:
        if refused.too_deep:
            error = jsonrpc.error(None, jsonrpc.INVALID_REQUEST, f"Invalid Request: {refused}")
        else:
            error = jsonrpc.error(None, jsonrpc.PARSE_ERROR, f"Parse error: {refused}")
        raise _Refusal(400, error) from None
    if isinstance(message, list):
        raise _Refusal(
            400, jsonrpc.error(None, jsonrpc.INVALID_REQUEST, "JSON-RPC batches are not supported")
        )
    request.scope["gateway.message"] = message  # for the activity log, if refused from here
    kind = jsonrpc.classify(message)
    if kind == "invalid":
        raise _Refusal(
            400, jsonrpc.error(None, jsonrpc.INVALID_REQUEST, "Invalid JSON-RPC message")
        )

    modern_version = _era_of(request, message)
    # A request that speaks 2026-07-28 is modern whatever its method: an
    # ``initialize`` carrying that envelope gets the era's 404, not a session.
    if modern_version is not None:
        await _post_modern(
            the_hub, request, receive, send, loaded, principal, message, kind, modern_version
        )
        return
    if kind == "request" and message["method"] == "initialize":
        await _initialize(the_hub, request, send, loaded, principal, message)
        return

    session_id = request.headers.get("mcp-session-id")
    if not session_id:
        raise _Refusal(
            400,
            jsonrpc.error(
                message.get("id"),
                jsonrpc.INVALID_REQUEST,
                "Bad Request: Mcp-Session-Id header is required (send initialize first)",
            ),
        )
    session = await _session_for(the_hub, session_id, loaded, principal)
    header_version = request.headers.get("mcp-protocol-version")
    if header_version is not None and header_version not in jsonrpc.SUPPORTED_VERSIONS:
        raise _Refusal(
            400,
            jsonrpc.error(
                message.get("id"),
                jsonrpc.INVALID_REQUEST,
                f"Unsupported MCP-Protocol-Version: {header_version}",
            ),
        )
    if kind != "request":
        await _respond(send, 202)
        return
    ctx = CallContext(
        view=loaded.view,
        protocol_version=session.protocol_version,
        principal=principal,
        session_id=session_id,
        client_info=session.client,
    )
    await _answer(the_hub, request, send, ctx, message, [])


async def _session_for(
    the_hub: Hub, session_id: str, loaded: LoadedEndpoint, principal: Principal
) -> Session:
    session = session_read(session_id)
    if (
        session is None
        or session.endpoint_id != loaded.id
        or session.principal != principal.key
        or await the_hub.is_session_ended(session_id)
    ):
        raise _Refusal(
            404, jsonrpc.error(None, jsonrpc.INVALID_REQUEST, "Session not found: initialize again")
        )
    return session


async def _initialize(
    the_hub: Hub,
    request: Request,
    send: Send,
    loaded: LoadedEndpoint,
    principal: Principal,
    message: dict[str, Any],
) -> None:
    params = message.get("params") if isinstance(message.get("params"), dict) else {}
    requested = params.get("protocolVersion") if isinstance(params, dict) else None
    version = requested if requested in jsonrpc.HANDSHAKE_VERSIONS else jsonrpc.LATEST_HANDSHAKE
    client = params.get("clientInfo") if isinstance(params, dict) else None
    client_info = {
        "name": str(client.get("name", ""))[:100] if isinstance(client, dict) else "",
        "version": str(client.get("version", ""))[:50] if isinstance(client, dict) else "",
    }
    session_id = session_create(
        Session(
            endpoint_id=loaded.id,
            principal=principal.key,
            protocol_version=version,
            client=client_info,
        )
    )
    ctx = CallContext(
        view=loaded.view,
        protocol_version=version,
        principal=principal,
        session_id=session_id,
        client_info=client_info,
    )
    await _answer(the_hub, request, send, ctx, message, [(b"mcp-session-id", session_id.encode())])


def _header_mismatch(message: dict[str, Any], text: str) -> _Refusal:
    return _Refusal(400, jsonrpc.error(message.get("id"), jsonrpc.HEADER_MISMATCH, text))


async def _post_modern(
    the_hub: Hub,
    request: Request,
    receive: Receive,
    send: Send,
    loaded: LoadedEndpoint,
    principal: Principal,
    message: dict[str, Any],
    kind: str,
    version: str,
) -> None:
    request_id = message.get("id")
    raw_params = message.get("params")
    params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    meta = params.get("_meta")
    if kind == "request":
        # Every modern request, server/discover included, carries the envelope.
        missing = [
            key
            for key in (jsonrpc.META_PROTOCOL_VERSION, jsonrpc.META_CLIENT_CAPABILITIES)
            if not isinstance(meta, dict) or key not in meta
        ]
        if missing:
            raise _Refusal(
                400,
                jsonrpc.error(
                    request_id,
                    jsonrpc.INVALID_PARAMS,
                    f"params._meta must carry {' and '.join(missing)}",
                ),
            )
    unsupported = _Refusal(
        400,
        jsonrpc.error(
            request_id,
            jsonrpc.UNSUPPORTED_PROTOCOL_VERSION,
            f"Unsupported protocol version: {version}",
            {"supported": list(jsonrpc.SUPPORTED_VERSIONS), "requested": version},
        ),
    )
    if kind != "request":
        if version not in jsonrpc.MODERN_VERSIONS:
            raise unsupported
        await _respond(send, 202)
        return
    method = message["method"]
    # Every POST mirrors the version and the method; an absent header is a mismatch
    # too. Headers are checked before the version, as the specification orders them.
    if request.headers.get("mcp-protocol-version") != version:
        raise _header_mismatch(message, "MCP-Protocol-Version header does not match _meta")
    if request.headers.get("mcp-method") != method:
        raise _header_mismatch(message, "Mcp-Method header does not match the body's method")
    if version not in jsonrpc.MODERN_VERSIONS:
        raise unsupported
    key = jsonrpc.NAME_BEARING.get(method)
    if key is not None and params.get(key) is not None:
        # A missing Mcp-Name, or a malformed base64 one, never matches the body.
        header_name = decode_header_value(request.headers.get("mcp-name"))
        if header_name != params.get(key):
            raise _header_mismatch(message, "Mcp-Name header does not match the body")
    if method == "tools/call":
        schema = _param_header_schemas(loaded.view).get(str(params.get("name")))
        if schema is not None:
            arguments = params.get("arguments")
            rejection = validate_mcp_param_headers(
                schema, arguments if isinstance(arguments, dict) else {}, request.headers
            )
            if rejection is not None:
                raise _header_mismatch(message, rejection.message)
    client = meta.get(jsonrpc.META_CLIENT_INFO) if isinstance(meta, dict) else None
    ctx = CallContext(
        view=loaded.view,
        protocol_version=version,
        principal=principal,
        client_info=client if isinstance(client, dict) else None,
    )
    if method == "subscriptions/listen":
        await _listen(the_hub, receive, send, loaded, principal, message)
        return
    await _answer(the_hub, request, send, ctx, message, [])


_PARAM_SCHEMAS: dict[str, tuple[ServedView, dict[str, Any]]] = {}


def _param_header_schemas(view: ServedView) -> dict[str, Any]:
    """Input schemas of the view's tools with ``x-mcp-header`` parameters, by public name.

    Built once per served view (views are immutable and replaced on change), so a
    ``tools/call`` of an unannotated tool costs one dictionary lookup.
    """
    cached = _PARAM_SCHEMAS.get(view.endpoint_id)
    if cached is not None and cached[0] is view:
        return cached[1]
    schemas: dict[str, Any] = {}
    for tool in view.tools:
        schema = tool.get("inputSchema")
        # Clients drop tools whose annotations are invalid and send no headers for them.
        if x_mcp_header_map(schema) and find_invalid_x_mcp_header(schema) is None:
            schemas[str(tool.get("name"))] = schema
    _PARAM_SCHEMAS[view.endpoint_id] = (view, schemas)
    return schemas


class _HeldResponse:
    """The response to one POST: JSON, unless a notification must reach the client first.

    The response start is held until the answer or the call's first notification
    (progress, an upstream's log) arrives, so a call that produces none is answered
    in JSON even when the client sent a progress token: clients cap the size of one
    SSE event (the Python SDK at 1 MiB), and some send a token on every call. The
    first notification switches the response to SSE; the answer is then its last
    event. A notification that comes after the answer is dropped.
    """

    __slots__ = ("_closed", "_headers", "_lock", "_send", "_streaming")

    def __init__(self, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        self._send, self._headers = send, headers
        self._streaming = False
        self._closed = False
        # Orders the writes once streaming: an upstream client may deliver
        # notifications from tasks of its own, concurrently with the answer.
        # Made by the first notification, so a JSON answer costs none.
        self._lock: asyncio.Lock | None = None

    async def notify(self, notification: dict[str, Any]) -> None:
        if self._closed:
            return
        # Decided before any await, so the answer (or a concurrent notification)
        # sees the switch to SSE and queues behind the response start.
        first = not self._streaming
        if first:
            self._streaming, self._lock = True, asyncio.Lock()
        assert self._lock is not None
        async with self._lock:
            if self._closed:
                return
            if first:
                await self._send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [*_SSE_HEADERS, *self._headers],
                    }
                )
            await self._send(
                {
                    "type": "http.response.body",
                    "body": sse_event(_dumps(notification)),
                    "more_body": True,
                }
            )

    async def answer(self, response: dict[str, Any], status: int) -> None:
        if not self._streaming:
            self._closed = True
            await _json(self._send, status, response, self._headers)
            return
        assert self._lock is not None
        async with self._lock:
            self._closed = True
            body = sse_event(_dumps(response))
            await self._send({"type": "http.response.body", "body": body, "more_body": False})


async def _answer(
    the_hub: Hub,
    request: Request,
    send: Send,
    ctx: CallContext,
    message: dict[str, Any],
    headers: list[tuple[bytes, bytes]],
) -> None:
    """Run one request; answer JSON, or SSE once a notification must reach the client first."""
    if message["method"] in COUNTED_METHODS and isinstance(ctx.principal, Principal):
        the_hub.note_use(ctx.principal)
    if "text/event-stream" not in request.headers.get("accept", ""):
        # A client that cannot read SSE is never streamed to (no notify: the
        # upstream is not asked for progress it could not deliver).
        response, status = await audit_recorder.engine_handle(the_hub.engine, ctx, message, request)
        await _json(send, status, response, headers)
        return
    held = _HeldResponse(send, headers)
    ctx.notify = held.notify
    response, status = await audit_recorder.engine_handle(the_hub.engine, ctx, message, request)
    await held.answer(response, status)


async def _pump(
    the_hub: Hub,
    stream_id: str,
    stream: _Stream,
    receive: Receive,
    send: Send,
    first: list[bytes],
    frame: Callable[[dict[str, Any]], bytes],
) -> None:
    """Hold an SSE stream open: write queued messages, keep it alive, stop on disconnect."""
    the_hub.streams[stream_id] = stream

    async def disconnected() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.create_task(disconnected())
    try:
        for chunk in first:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        while not watcher.done():
            getter = asyncio.ensure_future(stream.queue.get())
            done, _ = await asyncio.wait(
                {getter, watcher}, timeout=KEEPALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            if getter not in done:
                getter.cancel()
                if not watcher.done():
                    await send(
                        {"type": "http.response.body", "body": SSE_KEEPALIVE, "more_body": True}
                    )
                continue
            item = getter.result()
            if item is None:
                break
            await send({"type": "http.response.body", "body": frame(item), "more_body": True})
    finally:
        the_hub.streams.pop(stream_id, None)
        watcher.cancel()
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _get_stream(
    the_hub: Hub,
    request: Request,
    receive: Receive,
    send: Send,
    loaded: LoadedEndpoint,
    principal: Principal,
) -> None:
    if request.headers.get("mcp-protocol-version") in jsonrpc.MODERN_VERSIONS:
        raise _Refusal(
            405,
            {"error": "2026-07-28 has no GET stream: use subscriptions/listen."},
            [(b"allow", b"POST")],
        )
    if "text/event-stream" not in request.headers.get("accept", ""):
        raise _Refusal(406, {"error": "Not Acceptable: the GET stream is text/event-stream."})
    session_id = request.headers.get("mcp-session-id")
    if not session_id:
        raise _Refusal(400, {"error": "Bad Request: Mcp-Session-Id header is required."})
    await _session_for(the_hub, session_id, loaded, principal)
    await send({"type": "http.response.start", "status": 200, "headers": list(_SSE_HEADERS)})
    stream = _Stream(endpoint_id=loaded.id, session_id=session_id, principal=principal.key)
    await _pump(
        the_hub, secrets.token_hex(8), stream, receive, send, [b": stream open\n\n"], sse_event
    )


async def _listen(
    the_hub: Hub,
    receive: Receive,
    send: Send,
    loaded: LoadedEndpoint,
    principal: Principal,
    message: dict[str, Any],
) -> None:
    """2026-07-28 ``subscriptions/listen``: acknowledge, then stream change notifications."""
    params = message.get("params") or {}
    wanted = params.get("notifications") if isinstance(params, dict) else None
    wanted = wanted if isinstance(wanted, dict) else {}
    honored: dict[str, Any] = {}
    wants: set[str] = set()
    for key, name in (
        ("toolsListChanged", "tools"),
        ("resourcesListChanged", "resources"),
        ("promptsListChanged", "prompts"),
    ):
        if wanted.get(key) is True:
            honored[key] = True
            wants.add(name)
    request_id = message.get("id")
    meta = {jsonrpc.META_SUBSCRIPTION_ID: request_id}
    ack = jsonrpc.notification(
        "notifications/subscriptions/acknowledged", {"notifications": honored, "_meta": meta}
    )
    await send({"type": "http.response.start", "status": 200, "headers": list(_SSE_HEADERS)})
    stream = _Stream(
        endpoint_id=loaded.id,
        session_id=None,
        principal=principal.key,
        listen_id=request_id,
        wants=frozenset(wants),
    )
    # The body was read already: the next receive() is the client's disconnect.
    await _pump(the_hub, secrets.token_hex(8), stream, receive, send, [sse_event(ack)], sse_event)


async def _delete(
    the_hub: Hub, request: Request, send: Send, loaded: LoadedEndpoint, principal: Principal
) -> None:
    if request.headers.get("mcp-protocol-version") in jsonrpc.MODERN_VERSIONS:
        raise _Refusal(405, {"error": "2026-07-28 has no sessions to end."}, [(b"allow", b"POST")])
    session_id = request.headers.get("mcp-session-id")
    if not session_id:
        raise _Refusal(400, {"error": "Bad Request: Mcp-Session-Id header is required."})
    await _session_for(the_hub, session_id, loaded, principal)
    await the_hub.end_session(session_id)
    await _respond(send, 204)


# --- legacy HTTP+SSE (2024-11-05) --------------------------------------------------------------


async def _legacy_sse_stream(
    the_hub: Hub,
    request: Request,
    receive: Receive,
    send: Send,
    loaded: LoadedEndpoint,
    principal: Principal,
) -> None:
    if request.method != "GET":
        raise _Refusal(405, {"error": "Method not allowed."}, [(b"allow", b"GET")])
    stream_id = secrets.token_hex(12)
    session_id = session_create(
        Session(
            endpoint_id=loaded.id,
            principal=principal.key,
            protocol_version="2024-11-05",
            client={},
            channel=the_hub.channel or "",
            stream=stream_id,
        )
    )
    messages_url = f"{request.path.rsplit('/', 1)[0]}/messages?session_id={session_id}"
    await send({"type": "http.response.start", "status": 200, "headers": list(_SSE_HEADERS)})
    stream = _Stream(endpoint_id=loaded.id, session_id=session_id, principal=principal.key)
    await _pump(
        the_hub,
        stream_id,
        stream,
        receive,
        send,
        [sse_event(messages_url, event="endpoint")],
        lambda item: sse_event(_dumps(item), event="message"),
    )


async def _legacy_message(
    the_hub: Hub,
    request: Request,
    receive: Receive,
    send: Send,
    loaded: LoadedEndpoint,
    principal: Principal,
) -> None:
    if request.method != "POST":
        raise _Refusal(405, {"error": "Method not allowed."}, [(b"allow", b"POST")])
    session_id = (request.query.get("session_id") or [""])[0]
    if not session_id:
        raise _Refusal(400, {"error": "session_id is required."})
    session = await _session_for(the_hub, session_id, loaded, principal)
    if not session.stream:
        raise _Refusal(404, {"error": "Session not found."})
    body = await _read_body(receive, settings.GATEWAY_MCP_MAX_BODY_BYTES)
    if body is None:
        raise _Refusal(413, {"error": "Request body too large."})
    try:
        message = strictjson.loads(body)
    except strictjson.JsonRefused as refused:
        raise _Refusal(400, {"error": f"The body is not acceptable JSON: {refused}."}) from None
    kind = jsonrpc.classify(message)
    if kind == "invalid":
        raise _Refusal(400, {"error": "Invalid JSON-RPC message."})
    await _respond(send, 202, b"Accepted", [(b"content-type", b"text/plain")])
    if kind != "request":
        return
    version = session.protocol_version
    if message["method"] == "initialize":
        params = message.get("params") or {}
        requested = params.get("protocolVersion") if isinstance(params, dict) else None
        version = requested if requested in jsonrpc.HANDSHAKE_VERSIONS else "2024-11-05"
    relay = _StreamRelay(the_hub, session.channel, session.stream)
    ctx = CallContext(
        view=loaded.view,
        protocol_version=version,
        principal=principal,
        session_id=session_id,
        notify=relay.notify,
    )
    if message["method"] in COUNTED_METHODS:
        the_hub.note_use(principal)
    response, _status = await audit_recorder.engine_handle(the_hub.engine, ctx, message, request)
    await relay.answer(response)


class _StreamRelay:
    """A legacy SSE call's notifications, then its answer, to the session's stream.

    The stream may be held by another instance: everything goes the way the answer
    goes (``Hub.deliver``), in order, and nothing after the answer.
    """

    __slots__ = ("_answered", "_channel", "_hub", "_lock", "_stream")

    def __init__(self, the_hub: Hub, channel: str, stream: str) -> None:
        self._hub, self._channel, self._stream = the_hub, channel, stream
        self._answered = False
        # One delivery at a time: two sends through the channel layer in flight at
        # once may arrive in either order.
        self._lock = asyncio.Lock()

    async def notify(self, notification: dict[str, Any]) -> None:
        if self._answered:
            return
        async with self._lock:
            if self._answered:
                return
            try:
                await self._hub.deliver(self._channel, self._stream, notification)
            except ChannelFull:
                # The holder is not keeping up: drop this notification, not the call.
                logger.info("MCP legacy stream: a notification was dropped (channel full)")

    async def answer(self, response: dict[str, Any]) -> None:
        async with self._lock:
            self._answered = True
            # A burst of notifications may have filled the channel: the answer
            # waits for room (the holder drains it continuously) rather than being lost.
            for delay in (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2):
                try:
                    await self._hub.deliver(self._channel, self._stream, response)
                    return
                except ChannelFull:
                    await asyncio.sleep(delay)
            await self._hub.deliver(self._channel, self._stream, response)
