"""Writes of the activity log: management events, retention, the audit policy."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.utils import timezone

from audit.models import (
    DEFAULT_RETENTION_DAYS,
    AuditPolicy,
    AuditRecord,
    ManagementAction,
    ManagementEvent,
)
from gateway_project.text import fields_storable
from oauth.models import Organization

logger = logging.getLogger(__name__)

RETENTION_BATCH = 5000


def management_event_record(
    *,
    organization_id: Any,
    action: str,
    target_type: str,
    target_id: Any = "",
    target_name: str = "",
    actor: AbstractBaseUser | AnonymousUser | None = None,
    details: dict[str, Any] | None = None,
) -> ManagementEvent:
    """Record a change to the organisation's configuration, made by ``actor``.

    Written in the caller's transaction, so a rolled-back change leaves no event;
    ``details`` must never carry a secret value, only field names.
    ``action`` is one of ``ManagementAction`` (e.g. ``"connection.created"``).
    """
    if action not in ManagementAction.values:
        raise ValueError(f"Unknown management action {action!r}")
    is_person = actor is not None and getattr(actor, "is_authenticated", False)
    # Names and details may come from an upstream (tool names, descriptions).
    texts: dict[str, Any] = {
        "actor_name": actor.get_username()[:150] if is_person else "",  # type: ignore[union-attr]
        "target_type": target_type[:32],
        "target_id": str(target_id)[:64],
        "target_name": str(target_name)[:200],
        "details": details or {},
    }
    replaced = fields_storable(texts)
    event = ManagementEvent(
        at=timezone.now(),
        organization_id=organization_id,
        actor_id=actor.pk if is_person else None,  # type: ignore[union-attr]
        action=action,
        text_replaced=replaced,
        **texts,
    )
    event.save(force_insert=True)
    return event


def connection_secret_values() -> list[str]:
    """Every credential value of every connection (to redact them from the log), users'
    own tokens and OAuth client secrets included."""
    from connections.models import Connection
    from connections.selectors import credential_secret_values

    values: list[str] = []
    for connection in Connection.objects.exclude(credential__isnull=True).only("credential"):
        if connection.credential_unreadable:
            continue
        if connection.token:
            values.append(connection.token)
        values.extend(connection.headers.values())
        values.extend(connection.env.values())
    values.extend(credential_secret_values())
    return values


def audit_policy_set(*, organization: Organization, retention_days: Any) -> AuditPolicy:
    """Set how many days the organisation's records are kept (1 to 36,500)."""
    try:
        days = int(retention_days)
    except (TypeError, ValueError):
        raise ValidationError({"retentionDays": ["Give a whole number of days."]}) from None
    if not 1 <= days <= 36500:
        raise ValidationError({"retentionDays": ["Keep records between 1 and 36,500 days."]})
    policy, _ = AuditPolicy.objects.update_or_create(
        organization=organization, defaults={"retention_days": days}
    )
    return policy


def _delete_older(
    model: type[AuditRecord] | type[ManagementEvent], org_id: Any, cutoff: Any, batch: int
) -> int:
    deleted = 0
    while True:
        ids = list(
            model.objects.filter(organization_id=org_id, at__lt=cutoff)
            .order_by("at")
            .values_list("pk", flat=True)[:batch]
        )
        if not ids:
            return deleted
        model.objects.filter(pk__in=ids).delete()
        deleted += len(ids)


def audit_retention_apply(
    *, organization_ids: Iterable[Any] | None = None, batch: int = RETENTION_BATCH
) -> int:
    """Delete records (and management events) older than each organisation's retention.

    Deletes in batches of ``batch`` rows so no statement locks the table for long.
    Returns how many rows were deleted.
    """
    now = timezone.now()
    days = dict(AuditPolicy.objects.values_list("organization_id", "retention_days"))
    organizations = Organization.objects.all()
    if organization_ids is not None:
        organizations = organizations.filter(pk__in=list(organization_ids))
    deleted = 0
    for org_id in organizations.values_list("pk", flat=True):
        cutoff = now - timedelta(days=days.get(org_id, DEFAULT_RETENTION_DAYS))
        deleted += _delete_older(AuditRecord, org_id, cutoff, batch)
        deleted += _delete_older(ManagementEvent, org_id, cutoff, batch)
    if deleted:
        logger.info("Activity log retention: deleted %d old rows", deleted)
    return deleted
