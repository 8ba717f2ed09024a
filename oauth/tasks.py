"""Celery tasks of the authorization server: housekeeping. Tasks call services."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from oauth2_provider.models import clear_expired

from oauth.services import oauth_clients_unused_delete


@shared_task(ignore_result=True)
def oauth_housekeeping() -> int:
    """Delete self-registered clients nobody uses, and expired tokens and codes.

    Returns how many clients were deleted.
    """
    deleted = oauth_clients_unused_delete(
        older_than=timedelta(days=settings.GATEWAY_OAUTH_UNUSED_CLIENT_DAYS)
    )
    clear_expired()
    return deleted
