"""Spool segments the database refuses: set aside, counted, and shown to admins.

The spool's replay (``audit.recorder``) stores each closed segment with one
insert. When that insert fails for a reason of the segment's own (a value the
table refuses) rather than because the database is unreachable, the segment is
tried once more; at the second failure its records are stored one at a time and
those that still fail are written to the ``quarantine`` folder beside the spool
(with the reason, in ``<segment>.reason``), where no replay looks, and counted in
``QuarantinedSegment`` so admins see them on the Activity page and in the API.
An operator may repair a quarantined file and move it back into the spool.
"""

from __future__ import annotations

import json
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit.redaction import redactor
from gateway_project.text import text_storable

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)

QUARANTINE_DIR = "quarantine"
QUARANTINE_AFTER_FAILURES = 2


@dataclass(frozen=True)
class QuarantineNote:
    """Records moved to the quarantine folder: where, why, and how many per organisation."""

    path: Path
    segment: str
    reason: str
    per_organization: dict[str | None, int]


def database_unavailable(error: BaseException) -> bool:
    """Whether a failed insert says nothing about the records (the database is down,
    unreachable, restarting or timed out): psycopg's, sqlite3's and Django's
    ``OperationalError`` and ``InterfaceError`` alike."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"OperationalError", "InterfaceError"})


def failure_reason(error: BaseException) -> str:
    # The first line only: PostgreSQL's DETAIL line repeats the whole row, payloads included.
    first = (str(error).strip().splitlines() or [""])[0]
    text, _ = redactor.redact(f"{type(error).__name__}: {first}")
    return text_storable(text[:1000])[0]


def quarantine_write(
    directory: Path, segment: str, records: list[dict[str, Any]], reason: str
) -> QuarantineNote:
    """Write ``records`` (as JSON lines) and the reason beside them in the spool folder's
    ``quarantine`` folder, where no replay looks; an operator may fix and move them back."""
    folder = directory / QUARANTINE_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = folder / segment
    with open(target, "ab") as handle:
        for record in records:
            handle.write(_ENCODER.encode(record).encode(errors="replace") + b"\n")
    with open(folder / f"{segment}.reason", "a", encoding="utf-8") as handle:
        handle.write(f"{datetime.now(UTC).isoformat()} {reason}\n")
    counts: dict[str | None, int] = {}
    for record in records:
        organization = _organization_of(record)
        counts[organization] = counts.get(organization, 0) + 1
    return QuarantineNote(path=target, segment=segment, reason=reason, per_organization=counts)


def _organization_of(record: dict[str, Any]) -> str | None:
    try:
        return str(uuid.UUID(str(record.get("organization_id"))))
    except ValueError:
        return None


def quarantine_note_store(note: QuarantineNote) -> None:
    """Count quarantined records in the database, so admins see them (``Activity``)."""
    from audit.models import QuarantinedSegment

    now = datetime.now(UTC)
    QuarantinedSegment.objects.bulk_create(
        [
            QuarantinedSegment(
                at=now,
                organization_id=organization,
                host=text_storable(socket.gethostname())[0][:200],
                segment=note.segment[:200],
                records=count,
                reason=note.reason,
            )
            for organization, count in note.per_organization.items()
        ]
    )
