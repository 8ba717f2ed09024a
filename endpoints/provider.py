"""What the MCP transport needs from the database and the upstream pool.

The sync loaders run in a worker thread (``database_sync_to_async``) and only
when a per-process cache misses; ``GatewayBackend`` is the engine's
``Backend``: it forwards calls through the upstream pool and turns upstream
failures into short messages that name the server and leak nothing else.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from mcp import Client
from mcp.shared.dispatcher import ProgressFnT

from connections.credentials import RefreshOutcome, credential_refresh, my_connections_url
from connections.models import Connection
from connections.pool import UpstreamCallError, UpstreamPool, upstream_pool
from connections.services import connection_catalog_store, upstream_target_for
from connections.upstream import UpstreamError, UpstreamTarget, catalog_fetch_with
from endpoints.events import (
    connection_endpoints_changed_publish,
    credentials_changed_event_publish,
)
from endpoints.mcp import jsonrpc
from endpoints.mcp.engine import CallContext, ProgressSink, Route, ServedView
from endpoints.mcp.jsonrpc import ProtocolError
from endpoints.models import Endpoint
from endpoints.selectors import endpoint_member_may_use, endpoint_served
from oauth.models import Membership
from oauth.selectors import oauth_authorization_for_token
from oauth.services import API_TOKEN_PREFIX, api_token_authenticate, oauth_usage_record


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a user in an organisation, through one token."""

    user_id: int
    username: str
    organization_id: uuid.UUID
    token_id: str  # the API token's id, or the OAuth authorization's (stable across refreshes)
    token_kind: str  # "api_token" or "oauth"
    client_name: str
    # An OAuth token is valid only on the endpoint URL it was issued for (its audience).
    resource: str | None = None

    @property
    def key(self) -> str:
        """What sessions, streams and revocations know the principal by."""
        return f"{self.token_kind}:{self.token_id}"


@dataclass(frozen=True)
class LoadedEndpoint:
    """An endpoint as the transport serves it (immutable; cached per process)."""

    id: str
    slug: str
    organization_id: uuid.UUID
    view: ServedView
    connection_ids: tuple[str, ...]


def principal_from_token(raw: str) -> Principal | None:
    """The principal of a bearer token, or None when it is unknown, revoked or expired.

    API tokens (``gwt_…``) act for their user in their organisation; OAuth access
    tokens act for the user who authorized the client, only on the endpoint URL
    they were issued for, and only while their authorization lasts.
    """
    if raw.startswith(API_TOKEN_PREFIX):
        token = api_token_authenticate(raw=raw)
        if token is None:
            return None
        return Principal(
            user_id=token.user_id,
            username=token.user.get_username(),
            organization_id=token.organization_id,
            token_id=str(token.pk),
            token_kind="api_token",
            client_name=token.name,
        )
    authorization = oauth_authorization_for_token(raw=raw)
    if authorization is None:
        return None
    return Principal(
        user_id=authorization.user_id,
        username=authorization.user.get_username(),
        organization_id=authorization.endpoint.organization_id,
        token_id=str(authorization.pk),
        token_kind="oauth",
        client_name=authorization.client_name or "OAuth client",
        resource=authorization.resource,
    )


def usage_record(*, counts: dict[str, int]) -> None:
    """Add the calls made per principal key since the transport's last flush."""
    oauth_usage_record(counts=counts)


def _instructions(endpoint: Endpoint, connections: list[Connection]) -> str:
    """The endpoint's description, then each server's instructions under its name.

    An admin's instructions for a connection replace the server's own.
    """
    parts = [endpoint.description.strip()] if endpoint.description.strip() else []
    for connection in connections:
        text = (connection.instructions or connection.server_instructions or "").strip()
        if text:
            parts.append(f"## {connection.name}\n{text}")
    return "\n\n".join(parts)


def endpoint_load(*, slug: str) -> LoadedEndpoint | None:
    """The served view of the endpoint at ``/mcp/<slug>``, or None."""
    endpoint = Endpoint.objects.filter(slug=slug).first()
    if endpoint is None:
        return None
    connections = list(
        Connection.objects.filter(endpoint_links__endpoint=endpoint).order_by("name", "pk")
    )
    names = {connection.pk: connection.name for connection in connections}
    served = endpoint_served(endpoint=endpoint)

    def route(connection_id: uuid.UUID, upstream: str) -> Route:
        return Route(str(connection_id), upstream, names.get(connection_id, "upstream"))

    def resolve_resource(uri: str) -> Route | None:
        found = served.resource_route(uri)
        return None if found is None else route(found.connection_id, found.upstream_uri)

    view = ServedView(
        endpoint_id=str(endpoint.pk),
        name=endpoint.name,
        version="1.0",
        instructions=_instructions(endpoint, connections),
        tools=tuple(tool.definition for tool in served.tools),
        tool_routes={t.name: route(t.connection_id, t.upstream_name) for t in served.tools},
        resources=tuple(resource.definition for resource in served.resources),
        resource_templates=tuple(template.definition for template in served.resource_templates),
        prompts=tuple(prompt.definition for prompt in served.prompts),
        prompt_routes={p.name: route(p.connection_id, p.upstream_name) for p in served.prompts},
        template_routes={
            t.uri_template: route(t.connection_id, t.upstream_uri_template)
            for t in served.resource_templates
        },
        resolve_resource=resolve_resource,
        pii_filter=endpoint.pii_filter,
    )
    return LoadedEndpoint(
        id=str(endpoint.pk),
        slug=endpoint.slug,
        organization_id=endpoint.organization_id,
        view=view,
        connection_ids=tuple(str(connection.pk) for connection in connections),
    )


def endpoint_access(*, principal: Principal, endpoint_id: str) -> str:
    """``ok``, ``forbidden`` (a member not chosen) or ``not_found`` (another organisation)."""
    endpoint = Endpoint.objects.filter(pk=endpoint_id).first()
    if endpoint is None or endpoint.organization_id != principal.organization_id:
        return "not_found"
    membership = Membership.objects.filter(
        organization_id=endpoint.organization_id, user_id=principal.user_id
    ).first()
    if membership is None:
        return "not_found"
    return (
        "ok" if endpoint_member_may_use(endpoint=endpoint, membership=membership) else "forbidden"
    )


def connection_target_load(
    *, connection_id: str, user_id: int | None
) -> tuple[UpstreamTarget | UpstreamError, bool]:
    """How to reach a connection for a user, or why it cannot be (an ``UpstreamError``
    with a message for that user); and whether the answer is the user's own (personal
    mode) rather than the same for everyone."""
    connection = Connection.objects.filter(pk=connection_id).first()
    if connection is None:
        return UpstreamError("not_found", "The server is no longer registered."), False
    try:
        target: UpstreamTarget | UpstreamError = upstream_target_for(
            connection=connection, user_id=user_id
        )
    except UpstreamError as error:
        target = error
    return target, connection.is_personal


def credentials_changed_publish(*, connection_id: str, user_id: int | None, **_: Any) -> None:
    """``credentials_changed`` receiver: every process drops the targets it cached."""
    credentials_changed_event_publish(connection_id=connection_id, user_id=user_id)


_FAILURE_TEXT = {
    "timeout": "did not answer in time",
    # The call reached the server and may have run: it is never sent a second time.
    "interrupted": "stopped answering mid-call (the call was not repeated: it may have run)",
    "unreachable": "is unreachable right now",
    "refused": "is not reachable from the gateway",
    "tls": "could not be reached securely (TLS failed)",
    "unauthorized": "refused the gateway's credential",
    "forbidden": "refused access",
    "not_found": "is not at its configured address",
    "http": "answered with an HTTP error",
    "protocol": "answered with an MCP protocol error",
    "credential": "has a credential the gateway cannot read",
    "disabled": "cannot be started on this gateway",
}


# Their messages are written for the person the client acts for (and name the page
# where they add or renew their credential): passed on as they are.
_OWN_MESSAGE_KINDS = frozenset({"needs_credential", "needs_reauth"})


def upstream_failure_message(server: str, error: UpstreamError) -> str:
    """A short message naming the server; never a host, a header or a credential."""
    if error.kind in _OWN_MESSAGE_KINDS:
        return error.message
    return f"The server {server!r} {_FAILURE_TEXT.get(error.kind, 'failed')}."


def _refused_message(server: str, target: UpstreamTarget) -> UpstreamError:
    """The upstream refused a stored credential even after any refresh."""
    if target.personal:
        what = "sign-in" if target.refreshable else "token"
        how = "sign in again" if target.refreshable else "replace it"
        return UpstreamError(
            "needs_reauth",
            f"The server {server!r} refused your {what}: {how} on the My connections page, "
            f"then call again: {my_connections_url()}",
        )
    return UpstreamError(
        "needs_reauth",
        f"The server {server!r} refused the gateway's sign-in: an admin must connect it "
        "again on the connection's page.",
    )


def _catalog_store(*, connection_id: str, snapshot: Any) -> None:
    connection = Connection.objects.filter(pk=connection_id).first()
    if connection is not None:
        # Publishes endpoint.changed through the catalog_changed signal.
        connection_catalog_store(connection=connection, snapshot=snapshot)


def catalog_changed_publish(*, connection: Connection, **_: Any) -> None:
    """``catalog_changed`` receiver: endpoints serving the server refresh their view."""
    connection_endpoints_changed_publish(
        connection_id=connection.pk, kinds=["tools", "resources", "prompts"]
    )


async def catalog_refresh_on_list_changed(connection_id: str, kind: str, client: Client) -> None:
    """An upstream said its tools (resources, prompts) changed: refetch and tell endpoints.

    The catalog is fetched through the pool's open session, then stored like a
    health check would; endpoints federating the server publish ``endpoint.changed``
    so connected clients get ``list_changed`` at once.
    """
    snapshot = await catalog_fetch_with(client, call_timeout=30.0)
    await database_sync_to_async(_catalog_store)(connection_id=connection_id, snapshot=snapshot)


def upstream_pool_build() -> UpstreamPool:
    """The upstream pool of a gateway process, configured from settings."""
    return UpstreamPool(
        idle_seconds=float(settings.GATEWAY_UPSTREAM_IDLE_SECONDS),
        max_concurrency=settings.GATEWAY_UPSTREAM_MAX_CONCURRENCY,
        on_list_changed=catalog_refresh_on_list_changed,
    )


class _ProgressRelay:
    """Relays upstream progress to the client under the client's own progress token."""

    def __init__(self, token: Any, notify: ProgressSink) -> None:
        self.token, self.notify = token, notify

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        params: dict[str, Any] = {"progressToken": self.token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.notify(jsonrpc.notification("notifications/progress", params))


TargetsFn = Callable[[str, int | None], Awaitable[UpstreamTarget | UpstreamError]]
ForgetFn = Callable[[str, int | None], None]
# An access token this close to its expiry is renewed before the call, not sent.
EXPIRY_SLACK_SECONDS = 5.0


def _user_id(ctx: CallContext) -> int | None:
    principal = ctx.principal
    return principal.user_id if isinstance(principal, Principal) else None


class GatewayBackend:
    """Forwards engine calls through the upstream pool of the running event loop.

    Each call uses the target of the user the client acts for (their own
    credential for a personal-mode server). An OAuth credential whose access
    token has expired is refreshed before the call; a 401 from the upstream on
    a stored credential refreshes it once and sends the call once more.
    """

    def __init__(self, targets: TargetsFn, forget: ForgetFn | None = None) -> None:
        # ``targets``: connection_id, user_id -> UpstreamTarget | UpstreamError (cached);
        # ``forget``: drop a cached target (after a refresh).
        self._targets = targets
        self._forget = forget or (lambda connection_id, user_id: None)
        self._refreshing: dict[str, asyncio.Future[RefreshOutcome]] = {}

    async def _load(self, connection_id: str, user_id: int | None) -> UpstreamTarget:
        target = await self._targets(connection_id, user_id)
        if isinstance(target, UpstreamError):
            raise UpstreamError(target.kind, target.message)
        return target

    async def _target(self, route: Route, user_id: int | None) -> UpstreamTarget:
        target = await self._load(route.connection_id, user_id)
        expires = target.expires_at
        if (
            target.refreshable
            and expires is not None
            and expires <= time.time() + EXPIRY_SLACK_SECONDS
        ):
            target = await self._renewed(route, user_id, target)
            if target.expires_at is not None and target.expires_at <= time.time():
                raise UpstreamError(
                    "unreachable",
                    f"The sign-in to the server {route.server_label!r} expired and could not "
                    "be renewed right now; try again shortly.",
                )
        return target

    async def _refresh(self, target: UpstreamTarget) -> RefreshOutcome:
        """Refresh the target's credential, once per process however many calls ask."""
        key = target.credential_id
        future = self._refreshing.get(key)
        if future is None:
            rejected = target.headers.get("Authorization", "").removeprefix("Bearer ")
            future = asyncio.ensure_future(credential_refresh(key, rejected=rejected))
            self._refreshing[key] = future

            def done(finished: asyncio.Future[RefreshOutcome], key: str = key) -> None:
                if self._refreshing.get(key) is finished:
                    del self._refreshing[key]
                if not finished.cancelled():
                    finished.exception()

            future.add_done_callback(done)
        return await asyncio.shield(future)

    async def _renewed(
        self, route: Route, user_id: int | None, target: UpstreamTarget
    ) -> UpstreamTarget:
        await self._refresh(target)
        self._forget(route.connection_id, user_id)
        return await self._load(route.connection_id, user_id)

    async def _send(
        self,
        ctx: CallContext,
        route: Route,
        send: Callable[[UpstreamTarget], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        user_id = _user_id(ctx)
        target = await self._target(route, user_id)
        try:
            return await send(target)
        except UpstreamError as error:
            if error.kind != "unauthorized" or not target.credential_id:
                raise
            if not target.refreshable:
                raise _refused_message(route.server_label, target) from None
        # The upstream refused the access token: renew it once and send once more.
        renewed = await self._renewed(route, user_id, target)
        if renewed.headers == target.headers:
            raise _refused_message(route.server_label, target)
        try:
            return await send(renewed)
        except UpstreamError as error:
            if error.kind == "unauthorized":
                raise _refused_message(route.server_label, renewed) from None
            raise

    async def call_tool(
        self,
        ctx: CallContext,
        route: Route,
        arguments: dict[str, Any] | None,
        meta: dict[str, Any] | None,
    ) -> dict[str, Any]:
        progress: ProgressFnT | None = None
        token = meta.get("progressToken") if meta else None
        if token is not None and ctx.notify is not None:
            progress = _ProgressRelay(token, ctx.notify)

        upstream_meta = {k: v for k, v in (meta or {}).items() if not k.startswith("io.model")}
        upstream_meta.pop("progressToken", None)
        ctx.route, started = route, time.perf_counter()  # activity log (issue 7)

        async def send(target: UpstreamTarget) -> dict[str, Any]:
            return await upstream_pool().call_tool(
                connection_id=route.connection_id,
                target=target,
                name=route.upstream_name,
                arguments=arguments,
                meta=upstream_meta or None,
                progress=progress,
            )

        try:
            return await self._send(ctx, route, send)
        except UpstreamError as error:
            ctx.upstream_error = error
            text = upstream_failure_message(route.server_label, error)
            return {"content": [{"type": "text", "text": text}], "isError": True}
        except UpstreamCallError as error:
            raise ProtocolError(error.code, error.message, error.data) from None
        finally:
            ctx.upstream_seconds = time.perf_counter() - started

    async def _forward(
        self, ctx: CallContext, route: Route, call: str, **kwargs: Any
    ) -> dict[str, Any]:
        ctx.route, started = route, time.perf_counter()  # activity log (issue 7)

        async def send(target: UpstreamTarget) -> dict[str, Any]:
            method = getattr(upstream_pool(), call)
            result: dict[str, Any] = await method(
                connection_id=route.connection_id, target=target, **kwargs
            )
            return result

        try:
            return await self._send(ctx, route, send)
        except UpstreamError as error:
            ctx.upstream_error = error
            raise ProtocolError(
                jsonrpc.SERVER_ERROR, upstream_failure_message(route.server_label, error)
            ) from None
        except UpstreamCallError as error:
            raise ProtocolError(error.code, error.message, error.data) from None
        finally:
            ctx.upstream_seconds = time.perf_counter() - started

    async def read_resource(self, ctx: CallContext, route: Route, uri: str) -> dict[str, Any]:
        result = await self._forward(ctx, route, "read_resource", uri=route.upstream_name)
        contents = result.get("contents")
        if isinstance(contents, list):
            # Answer with the URI the client asked for, not the upstream's.
            for item in contents:
                if isinstance(item, dict) and item.get("uri") == route.upstream_name:
                    item["uri"] = uri
        return result

    async def get_prompt(
        self, ctx: CallContext, route: Route, arguments: dict[str, str] | None
    ) -> dict[str, Any]:
        return await self._forward(
            ctx, route, "get_prompt", name=route.upstream_name, arguments=arguments
        )

    async def complete(
        self, ctx: CallContext, route: Route, params: dict[str, Any]
    ) -> dict[str, Any]:
        upstream = dict(params)
        ref = dict(params["ref"])
        if ref.get("type") == "ref/prompt":
            ref["name"] = route.upstream_name
        else:
            ref["uri"] = route.upstream_name
        upstream["ref"] = ref
        return await self._forward(ctx, route, "complete", params=upstream)
