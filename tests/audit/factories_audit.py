"""Audit records made directly (as the writer would store them)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from audit.models import AuditRecord
from audit.recorder import record_id_new


def make_records(organization, count: int, **fields: Any) -> list[AuditRecord]:
    """``count`` records, one second apart, newest last; ``fields`` override defaults."""
    start = fields.pop("start", timezone.now() - timedelta(hours=1))
    rows = []
    for index in range(count):
        at = start + timedelta(seconds=index)
        values = {
            "id": record_id_new(at.timestamp()),
            "at": at,
            "organization_id": organization.pk,
            "method": "tools/call",
            "name": f"paged__tool_{index % 3:02d}",
            "status": "success",
            "endpoint_name": "Team tools",
            "arguments": f'{{"n": {index}}}',
            "result": '{"content": []}',
            **fields,
        }
        rows.append(AuditRecord(**values))
    AuditRecord.objects.bulk_create(rows)
    return rows
