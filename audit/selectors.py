"""Reads of the activity log, always scoped to one organisation (and one user for members)."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Max, Q, QuerySet, Sum
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit.models import AuditRecord, CallStatus, ManagementEvent, QuarantinedSegment
from gateway_project.text import text_is_storable
from oauth.models import ApiToken, Membership, OAuthAccessToken, Role
from oauth.services import API_TOKEN_PREFIX

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
FILTERS = ("endpoint", "connection", "tool", "user", "client", "status", "since", "until", "q")


@dataclass(frozen=True)
class TokenIdentity:
    """Who a bearer token names, even when it no longer works (to attribute refusals)."""

    user_id: int
    username: str
    organization_id: uuid.UUID
    token_id: str
    token_kind: str
    client_name: str
    revoked: bool


def token_identity(*, raw: str) -> TokenIdentity | None:
    """The owner of an API token or an OAuth access token, valid or not; None when no
    token matches (a revoked OAuth authorization's tokens are deleted)."""
    if len(raw) > 512:
        return None
    digest = hashlib.sha256(raw.encode()).hexdigest()
    if not raw.startswith(API_TOKEN_PREFIX):
        return _oauth_identity(digest)
    token = ApiToken.objects.select_related("user").filter(token_hash=digest).first()
    if token is None:
        return None
    return TokenIdentity(
        user_id=token.user_id,
        username=token.user.get_username(),
        organization_id=token.organization_id,
        token_id=str(token.pk),
        token_kind="api_token",
        client_name=token.name,
        revoked=token.revoked_at is not None or not token.user.is_active,
    )


def _oauth_identity(digest: str) -> TokenIdentity | None:
    access = (
        OAuthAccessToken.objects.select_related("authorization__user", "authorization__endpoint")
        .filter(token_checksum=digest, authorization__isnull=False)
        .first()
    )
    authorization = access.authorization if access is not None else None
    if access is None or authorization is None:
        return None
    now = timezone.now()
    return TokenIdentity(
        user_id=authorization.user_id,
        username=authorization.user.get_username(),
        organization_id=authorization.endpoint.organization_id,
        token_id=str(authorization.pk),
        token_kind="oauth",
        client_name=authorization.client_name,
        revoked=authorization.revoked_at is not None
        or authorization.expires_at <= now
        or access.expires <= now
        or not authorization.user.is_active,
    )


def audit_sees_all(membership: Membership) -> bool:
    """Admins and auditors see every record of the organisation; members their own."""
    return membership.role in (Role.ADMIN, Role.AUDITOR)


class FilterError(ValueError):
    """A filter value that cannot be used (the message names it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _uuid(field: str, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise FilterError(field, "Not a valid id.") from None


def _moment(field: str, value: str) -> datetime:
    moment = _utc(value)
    if moment is None:
        raise FilterError(field, "Use an ISO 8601 date and time, e.g. 2026-01-31T12:00:00Z.")
    return moment


def _utc(value: str) -> datetime | None:
    """An ISO 8601 moment in UTC, or None when it is not one. In UTC because
    PostgreSQL refuses offsets beyond ±15:59 that Python accepts (``+20:41``), and a
    moment whose UTC form is out of range (year 9999 at -15:00) is no moment."""
    try:
        moment = parse_datetime(value)
        if moment is None:
            return None
        if moment.tzinfo is None:
            moment = timezone.make_aware(moment, timezone.get_current_timezone())
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def audit_record_queryset(
    *, membership: Membership, filters: dict[str, str] | None = None
) -> QuerySet[AuditRecord]:
    """The records the membership may see, filtered, newest first.

    ``filters``: ``endpoint``, ``connection`` (ids), ``tool`` (public name, exact),
    ``user`` (user id), ``client`` (client name, exact), ``status``, ``since`` /
    ``until`` (ISO 8601) and ``q`` (text in the tool name or the error message).
    Raises ``FilterError`` for a malformed value.
    """
    records = AuditRecord.objects.filter(organization_id=membership.organization_id)
    if not audit_sees_all(membership):
        records = records.filter(user_id=membership.user_id)
    given = {k: (v or "").strip() for k, v in (filters or {}).items() if (v or "").strip()}
    for field, value in given.items():
        # No stored text holds these, and PostgreSQL refuses them in a query.
        if not text_is_storable(value):
            raise FilterError(field, "Remove the NUL or invalid characters from this value.")
    if "endpoint" in given:
        records = records.filter(endpoint_id=_uuid("endpoint", given["endpoint"]))
    if "connection" in given:
        records = records.filter(connection_id=_uuid("connection", given["connection"]))
    if "tool" in given:
        records = records.filter(name=given["tool"])
    if "user" in given:
        try:
            records = records.filter(user_id=int(given["user"]))
        except ValueError:
            raise FilterError("user", "Not a valid user id.") from None
    if "client" in given:
        records = records.filter(client_name=given["client"])
    if "status" in given:
        if given["status"] not in CallStatus.values:
            raise FilterError("status", f"Choose one of: {', '.join(CallStatus.values)}.")
        records = records.filter(status=given["status"])
    if "since" in given:
        records = records.filter(at__gte=_moment("since", given["since"]))
    if "until" in given:
        records = records.filter(at__lt=_moment("until", given["until"]))
    if "q" in given:
        text = given["q"][:200]
        records = records.filter(Q(name__icontains=text) | Q(error_message__icontains=text))
    return records.order_by("-at", "-id")


def _cursor_encode(record: AuditRecord) -> str:
    raw = json.dumps([record.at.isoformat(), str(record.pk)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at_text, pk_text = json.loads(base64.urlsafe_b64decode(padded))
        at = _utc(at_text) if isinstance(at_text, str) else None
        if at is None:
            raise ValueError
        return at, uuid.UUID(pk_text)
    except (ValueError, TypeError):
        raise FilterError("cursor", "Not a valid cursor.") from None


@dataclass
class Page:
    items: list[AuditRecord]
    next_cursor: str | None


def audit_record_page(
    *,
    membership: Membership,
    filters: dict[str, str] | None = None,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
    summary: bool = True,
) -> Page:
    """One page of records after ``cursor`` (keyset pagination: one query per page,
    whatever the depth). ``summary`` leaves the payload columns out."""
    records = audit_record_queryset(membership=membership, filters=filters)
    if cursor:
        at, pk = _cursor_decode(cursor)
        records = records.filter(Q(at__lt=at) | Q(at=at, id__lt=pk))
    if summary:
        records = records.defer("arguments", "result")
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    items = list(records[: limit + 1])
    more = len(items) > limit
    items = items[:limit]
    return Page(items=items, next_cursor=_cursor_encode(items[-1]) if more and items else None)


def audit_record_get(*, membership: Membership, record_id: Any) -> AuditRecord | None:
    """One record the membership may see, or None (also for a malformed id)."""
    try:
        key = uuid.UUID(str(record_id))
    except ValueError:
        return None
    return audit_record_queryset(membership=membership).filter(pk=key).first()


def audit_filter_choices(*, membership: Membership) -> dict[str, Any]:
    """Endpoints, connections and people to offer in the filter form (small queries)."""
    from connections.models import Connection
    from endpoints.models import Endpoint

    org = membership.organization_id
    people = Membership.objects.filter(organization_id=org).select_related("user")
    return {
        "endpoints": list(Endpoint.objects.filter(organization_id=org).order_by("name")),
        "connections": list(Connection.objects.filter(organization_id=org).order_by("name")),
        "users": [m.user for m in people.order_by("user__username")]
        if audit_sees_all(membership)
        else [],
        "statuses": CallStatus.choices,
    }


def management_event_list(*, membership: Membership, limit: int = 100) -> list[ManagementEvent]:
    """The organisation's latest configuration changes (admins and auditors only)."""
    if not audit_sees_all(membership):
        return []
    return list(
        ManagementEvent.objects.filter(organization_id=membership.organization_id).order_by(
            "-at", "-id"
        )[:limit]
    )


def record_payload(text: str, truncated: bool) -> str:
    """Pretty-printed JSON for the detail view (as stored when it was cut)."""
    if not text or truncated:
        return text
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


EXPORT_FIELDS = (
    "id",
    "at",
    "organization_id",
    "endpoint_id",
    "endpoint_name",
    "connection_id",
    "connection_name",
    "method",
    "name",
    "upstream_name",
    "status",
    "refusal",
    "user_id",
    "username",
    "token_kind",
    "token_id",
    "client_name",
    "client_software",
    "session_id",
    "protocol_version",
    "arguments",
    "arguments_truncated",
    "result",
    "result_truncated",
    "is_error",
    "error_message",
    "http_status",
    "rpc_code",
    "upstream_ms",
    "total_ms",
    "request_bytes",
    "response_bytes",
    "pii_redacted",
    "secrets_redacted",
    "text_replaced",
    "error_detail",
)
EXPORT_BATCH = 1000


def audit_record_export_rows(
    *, membership: Membership, filters: dict[str, str] | None = None, batch: int = EXPORT_BATCH
) -> Iterator[dict[str, Any]]:
    """Every record of the filtered set as plain values, newest first, fetched in
    keyset batches of ``batch`` rows: memory stays flat whatever the table's size,
    and no long-running cursor or transaction is held. Raises ``FilterError`` at once
    for a bad filter (before the response starts)."""
    base = audit_record_queryset(membership=membership, filters=filters)

    def rows() -> Iterator[dict[str, Any]]:
        last: tuple[datetime, uuid.UUID] | None = None
        try:
            while True:
                query = base
                if last is not None:
                    query = query.filter(Q(at__lt=last[0]) | Q(at=last[0], id__lt=last[1]))
                chunk = list(query.values(*EXPORT_FIELDS)[:batch])
                if not chunk:
                    return
                yield from chunk
                last = (chunk[-1]["at"], chunk[-1]["id"])
                if len(chunk) < batch:
                    return
        finally:
            # The rows are read while the response streams, after the request's own
            # clean-up may have run (or, when a query fails half-way, instead of it):
            # the connection of the thread that streamed must not outlive the export.
            # (Not inside a transaction, which is its owner's to end: tests run in one.)
            if not connection.in_atomic_block:
                connection.close()

    return rows()


def audit_retention_days(*, organization: Any) -> int:
    """How many days the organisation's records are kept."""
    from audit.models import DEFAULT_RETENTION_DAYS, AuditPolicy

    days = (
        AuditPolicy.objects.filter(organization=organization)
        .values_list("retention_days", flat=True)
        .first()
    )
    return DEFAULT_RETENTION_DAYS if days is None else int(days)


@dataclass(frozen=True)
class QuarantineSummary:
    """Records of the organisation the activity log could not store (see
    ``audit.recorder``): how many, in how many segments, the latest and why."""

    records: int
    segments: int
    last_at: datetime | None
    last_reason: str


def audit_quarantine_summary(*, membership: Membership) -> QuarantineSummary | None:
    """For admins and auditors (None for members): what the log lost to quarantine."""
    if not audit_sees_all(membership):
        return None
    rows = QuarantinedSegment.objects.filter(organization_id=membership.organization_id)
    totals = rows.aggregate(records=Sum("records"), segments=Count("id"), last_at=Max("at"))
    if not totals["segments"]:
        return QuarantineSummary(records=0, segments=0, last_at=None, last_reason="")
    last = rows.order_by("-at").values_list("reason", flat=True).first() or ""
    return QuarantineSummary(
        records=int(totals["records"] or 0),
        segments=int(totals["segments"]),
        last_at=totals["last_at"],
        last_reason=last,
    )
