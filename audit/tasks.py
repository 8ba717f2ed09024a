"""Celery tasks of the activity log: retention and the replay of leftover spool segments."""

from __future__ import annotations

from celery import shared_task

from audit.recorder import writer
from audit.services import audit_retention_apply


@shared_task(ignore_result=True)
def audit_retention() -> int:
    """Delete records older than each organisation's retention, in batches."""
    return audit_retention_apply()


@shared_task(ignore_result=True)
def audit_spool_replay() -> int:
    """Store the spool segments of gateway processes that died before flushing them."""
    return writer().replay()
