"""Change events of endpoints, sent through the Channels layer.

Every instance's transport holds streams of AI clients in group
``endpoint.<id>``; after a toggle, an alias or an endpoint edit it receives
``{"type": "endpoint.changed", ...}`` (the consumer's ``endpoint_changed``
handler), drops its cached served view and sends ``notifications/*/list_changed``.
Through the channel layer (Redis in production) an edit on one instance reaches
streams held by another.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Any, Final, Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

EVENT_TYPE: Final = "endpoint.changed"
# Every transport process listens here for ended sessions and revoked principals.
SESSIONS_GROUP: Final = "mcp.sessions"

ChangeKind = Literal["tools", "resources", "prompts", "endpoint", "access", "deleted"]
"""What changed: a served list (``tools``, ``resources``, ``prompts``), the
endpoint's own fields (``endpoint``), who may use it (``access``), or it is gone."""

CHANGE_KINDS: Final[tuple[ChangeKind, ...]] = (
    "tools",
    "resources",
    "prompts",
    "endpoint",
    "access",
    "deleted",
)


class EndpointChangedEvent(TypedDict):
    """The payload of ``endpoint.changed``."""

    type: Literal["endpoint.changed"]
    endpoint_id: str
    kinds: list[ChangeKind]


def endpoint_group(endpoint_id: uuid.UUID | str) -> str:
    """The channel-layer group of the streams open on an endpoint."""
    return f"endpoint.{endpoint_id}"


_pending: set[asyncio.Task[None]] = set()


def endpoint_changed_publish(*, endpoint_id: uuid.UUID | str, kinds: Iterable[ChangeKind]) -> None:
    """Tell every instance's streams on the endpoint that it changed."""
    wanted = set(kinds)
    ordered = [kind for kind in CHANGE_KINDS if kind in wanted]
    event: EndpointChangedEvent = {
        "type": EVENT_TYPE,
        "endpoint_id": str(endpoint_id),
        "kinds": ordered,
    }
    _group_send(endpoint_group(endpoint_id), event)


class PrincipalRevokedEvent(TypedDict):
    """The payload of ``mcp.principal.revoked``: a token or authorization stopped working."""

    type: Literal["mcp.principal.revoked"]
    principal: str


def principal_revoked_on_commit(*, principal_key: str) -> None:
    """Once committed, tell every instance to forget the principal's cached token and
    close its open MCP streams (group ``mcp.sessions``, which every transport joins)."""
    event: PrincipalRevokedEvent = {"type": "mcp.principal.revoked", "principal": principal_key}
    transaction.on_commit(lambda: _group_send(SESSIONS_GROUP, event), robust=True)


class CredentialsChangedEvent(TypedDict):
    """The payload of ``mcp.credentials.changed``: a stored upstream credential changed."""

    type: Literal["mcp.credentials.changed"]
    connection_id: str
    user_id: int | None  # None: every user of the connection


def credentials_changed_event_publish(*, connection_id: str, user_id: int | None) -> None:
    """Tell every instance to drop the upstream targets it cached for this credential
    (group ``mcp.sessions``); sent after the change committed."""
    event: CredentialsChangedEvent = {
        "type": "mcp.credentials.changed",
        "connection_id": str(connection_id),
        "user_id": user_id,
    }
    _group_send(SESSIONS_GROUP, event)


def _group_send(group: str, event: Any) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(layer.group_send)(group, event)
        return
    # Called from a thread that runs an event loop (async code calling a sync
    # service): blocking it with async_to_sync is refused, so send on that loop.
    task = loop.create_task(layer.group_send(group, event))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


def endpoint_changed_on_commit(
    *, endpoint_id: uuid.UUID | str, kinds: Iterable[ChangeKind]
) -> None:
    """Publish once the current transaction commits (never for a rolled-back change).

    ``robust``: a channel layer that is down must not fail a saved change; it is
    logged, and clients see the change at their next list.
    """
    frozen = list(kinds)
    transaction.on_commit(
        lambda: endpoint_changed_publish(endpoint_id=endpoint_id, kinds=frozen), robust=True
    )


def connection_endpoints_changed_publish(
    *, connection_id: uuid.UUID | str, kinds: Iterable[ChangeKind]
) -> None:
    """Publish a change to every endpoint that federates a connection.

    For the catalog refresh: when a server's tools change upstream, the
    endpoints serving it must refresh their served view.
    """
    from endpoints.selectors import endpoint_ids_for_connection

    frozen = list(kinds)
    for endpoint_id in endpoint_ids_for_connection(connection_id=connection_id):
        endpoint_changed_on_commit(endpoint_id=endpoint_id, kinds=frozen)
