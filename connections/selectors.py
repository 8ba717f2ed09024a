"""Reads of connections, always scoped by organisation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from connections.models import (
    CatalogEntry,
    CatalogKind,
    Connection,
    CredentialMode,
    HealthCheck,
    UpstreamCredential,
)
from oauth.models import Organization


def connection_list(*, organization: Organization) -> QuerySet[Connection]:
    """The organisation's connections, by name."""
    return Connection.objects.filter(organization=organization).order_by("name")


def connection_get(
    *, organization: Organization, connection_id: str | uuid.UUID
) -> Connection | None:
    """One connection of the organisation, or None.

    A malformed id, a missing id and another organisation's id all give None, so
    callers answer the same 404 for each and ids leak nothing across tenants.
    """
    try:
        key = (
            connection_id if isinstance(connection_id, uuid.UUID) else uuid.UUID(str(connection_id))
        )
    except ValueError:
        return None
    return Connection.objects.filter(organization=organization, pk=key).first()


def connection_catalog(*, connection: Connection) -> dict[str, list[CatalogEntry]]:
    """The connection's catalog entries grouped by kind, in the server's order."""
    grouped: dict[str, list[CatalogEntry]] = {kind: [] for kind in CatalogKind.values}
    for entry in CatalogEntry.objects.filter(connection=connection).order_by("position", "key"):
        grouped[entry.kind].append(entry)
    return grouped


def connection_health_history(*, connection: Connection, limit: int = 20) -> list[HealthCheck]:
    """The connection's most recent health checks, newest first."""
    return list(HealthCheck.objects.filter(connection=connection).order_by("-checked_at")[:limit])


def credential_secret_values() -> list[str]:
    """Every stored user and OAuth secret (for the activity log's redactor, in the background)."""
    values: list[str] = []
    for credential in UpstreamCredential.objects.only("secret").iterator():
        if not credential.unreadable:
            values.extend(credential.secret_values())
    for connection in Connection.objects.exclude(oauth_client__isnull=True).only("oauth_client"):
        secret = (
            connection.oauth_client_secret if isinstance(connection.oauth_client, dict) else None
        )
        if secret:
            values.append(secret)
    return values


@dataclass(frozen=True)
class MyConnection:
    """A personal-mode server as one user sees it on "My connections"."""

    connection: Connection
    credential: UpstreamCredential | None
    state: str  # missing, valid, expiring, needs_reauth

    @property
    def state_label(self) -> str:
        return {
            "missing": "Not connected",
            "valid": "Connected",
            "expiring": "Connected (renewing soon)",
            "needs_reauth": "Needs your sign-in again",
        }[self.state]


def my_connections(*, organization: Organization, user: Any) -> list[MyConnection]:
    """The organisation's personal-mode servers, each with the user's own credential."""
    return _my_rows(
        Connection.objects.filter(
            organization=organization, credential_mode=CredentialMode.PERSONAL
        ).order_by("name"),
        user,
    )


def _my_rows(found: QuerySet[Connection], user: Any) -> list[MyConnection]:
    from connections.credentials import credential_display_state

    connections = list(found)
    mine = {
        credential.connection_id: credential
        for credential in UpstreamCredential.objects.filter(connection__in=connections, user=user)
    }
    now = timezone.now()
    rows = []
    for connection in connections:
        credential = mine.get(connection.pk)
        state = "missing" if credential is None else credential_display_state(credential, now=now)
        rows.append(MyConnection(connection=connection, credential=credential, state=state))
    return rows


def connection_credentials(*, connection: Connection) -> list[UpstreamCredential]:
    """Every stored credential of a connection (users' own, and the shared OAuth one first)."""
    return list(
        UpstreamCredential.objects.filter(connection=connection)
        .select_related("user")
        .order_by("user__username", "created_at")
    )


def credentials_missing(*, connection_ids: Any, user: Any) -> list[MyConnection]:
    """Among these connections, the personal-mode ones the user has no usable credential
    for (none yet, or one that needs a new sign-in): what the consent page prompts for."""
    return [
        row
        for row in _my_rows(
            Connection.objects.filter(
                pk__in=list(connection_ids), credential_mode=CredentialMode.PERSONAL
            ).order_by("name"),
            user,
        )
        if row.state in ("missing", "needs_reauth")
    ]
