"""Celery tasks of connections: periodic health checks and upstream OAuth refreshes.
Tasks take ids and call services."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from connections.credentials import (
    credential_refresh_sync,
    credentials_refresh_due,
    upstream_oauth_flows_expired_delete,
)
from connections.models import Connection
from connections.services import connection_check_health, connection_claim_check

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def connections_check_due() -> int:
    """Fan out one check for every connection whose next check is due."""
    now = timezone.now()
    due = Connection.objects.filter(Q(next_check_at__isnull=True) | Q(next_check_at__lte=now))
    due = due.filter(Q(check_claimed_until__isnull=True) | Q(check_claimed_until__lt=now))
    ids = list(due.values_list("pk", flat=True)[:1000])
    expires = float(settings.GATEWAY_HEALTH_CHECK_INTERVAL)
    for connection_id in ids:
        connection_check.apply_async(args=(str(connection_id),), expires=expires)
    return len(ids)


@shared_task(ignore_result=True)
def connection_check(connection_id: str) -> bool:
    """Check one connection, unless another worker holds its claim. Returns whether it ran."""
    connection = Connection.objects.filter(pk=connection_id).first()
    if connection is None:
        return False
    lease = timedelta(
        seconds=connection.connect_timeout_seconds + connection.call_timeout_seconds * 4
    )
    if not connection_claim_check(connection_id=connection.pk, lease=lease):
        return False
    try:
        connection_check_health(connection=connection)
    except Exception:
        # An unexpected failure must not make the beat re-dispatch this check every
        # interval: push the next run forward and release the claim.
        logger.exception("Health check of connection %s failed unexpectedly", connection_id)
        Connection.objects.filter(pk=connection_id).update(
            next_check_at=timezone.now() + timedelta(minutes=10), check_claimed_until=None
        )
    return True


@shared_task(ignore_result=True)
def upstream_credentials_refresh_due() -> int:
    """Fan out one refresh for every OAuth credential whose access token expires soon,
    and forget unfinished sign-ins that expired."""
    upstream_oauth_flows_expired_delete()
    ids = credentials_refresh_due()
    expires = float(settings.GATEWAY_UPSTREAM_OAUTH_REFRESH_INTERVAL)
    for credential_id in ids:
        upstream_credential_refresh.apply_async(args=(credential_id,), expires=expires)
    return len(ids)


@shared_task(ignore_result=True)
def upstream_credential_refresh(credential_id: str) -> str:
    """Renew one credential's access token; a refused refresh marks it as needing re-auth."""
    outcome = credential_refresh_sync(credential_id)
    return outcome.status
