"""Reads of connections, always scoped by organisation."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from connections.models import CatalogEntry, CatalogKind, Connection, HealthCheck
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
