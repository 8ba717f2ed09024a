"""The activity log: one row per MCP call (or refused attempt) and per management change.

Rows are append-only and keep *snapshots* (ids and names) of what they refer to,
not foreign keys: a record must outlive the endpoint, connection, user or token
it names, and the background writer must be able to insert a batch whatever was
deleted in the meantime.
"""

from __future__ import annotations

import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

DEFAULT_RETENTION_DAYS = 90


class CallStatus(models.TextChoices):
    SUCCESS = "success", "Success"
    TOOL_ERROR = "tool_error", "Tool error"  # the tool answered with isError: true
    ERROR = "error", "Error"  # a JSON-RPC error (upstream or gateway)
    REFUSED = "refused", "Refused"  # stopped by the gateway before reaching an upstream


class AuditRecord(models.Model):
    """One ``tools/call``, ``resources/read`` or ``prompts/get`` through an endpoint,
    or a refused attempt at one.

    ``id`` is made by the recorder when the call is answered (time-ordered), so the
    write-ahead spool can be replayed any number of times without duplicates.
    ``arguments`` and ``result`` are JSON text with secrets and token-shaped
    strings redacted, cut at ``GATEWAY_AUDIT_MAX_PAYLOAD`` characters (then the
    ``*_truncated`` flag is set and the text is no longer valid JSON).
    ``session_id`` is a digest of the MCP session id (which is a signed value).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    at = models.DateTimeField()
    organization_id = models.UUIDField()
    endpoint_id = models.UUIDField(null=True, blank=True)
    endpoint_name = models.CharField(max_length=200, blank=True)
    connection_id = models.UUIDField(null=True, blank=True)
    connection_name = models.CharField(max_length=200, blank=True)
    method = models.CharField(max_length=32)
    name = models.CharField(max_length=512, blank=True)
    upstream_name = models.CharField(max_length=512, blank=True)
    status = models.CharField(max_length=16, choices=CallStatus.choices)
    refusal = models.CharField(max_length=32, blank=True)
    user_id = models.IntegerField(null=True, blank=True)
    username = models.CharField(max_length=150, blank=True)
    token_kind = models.CharField(max_length=16, blank=True)
    token_id = models.CharField(max_length=64, blank=True)
    client_name = models.CharField(max_length=200, blank=True)
    client_software = models.CharField(max_length=200, blank=True)
    session_id = models.CharField(max_length=64, blank=True)
    protocol_version = models.CharField(max_length=16, blank=True)
    arguments = models.TextField(blank=True)
    arguments_truncated = models.BooleanField(default=False)
    result = models.TextField(blank=True)
    result_truncated = models.BooleanField(default=False)
    is_error = models.BooleanField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    rpc_code = models.IntegerField(null=True, blank=True)
    upstream_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)
    request_bytes = models.PositiveIntegerField(default=0)
    response_bytes = models.PositiveIntegerField(default=0)
    pii_redacted = models.CharField(max_length=100, blank=True)  # comma-separated kinds
    secrets_redacted = models.BooleanField(default=False)
    # Some text held characters the database cannot store (NUL, lone surrogates):
    # they were replaced by U+FFFD (gateway_project.text).
    text_replaced = models.BooleanField(default=False)
    # For admins: the precise upstream failure behind a call that failed (the
    # client only sees a short message).
    error_detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            # Newest first per organisation, and the same under each filter:
            # every list query is "organisation (+ one filter) ORDER BY at DESC, id DESC".
            models.Index(fields=["organization_id", "-at", "-id"], name="audit_org_at"),
            models.Index(
                fields=["organization_id", "endpoint_id", "-at"], name="audit_org_endpoint"
            ),
            models.Index(
                fields=["organization_id", "connection_id", "-at"], name="audit_org_connection"
            ),
            models.Index(fields=["organization_id", "user_id", "-at"], name="audit_org_user"),
            models.Index(fields=["organization_id", "status", "-at"], name="audit_org_status"),
            models.Index(fields=["organization_id", "name", "-at"], name="audit_org_name"),
            models.Index(fields=["organization_id", "client_name", "-at"], name="audit_org_client"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.method} {self.name} {self.status}"

    @property
    def pii_kinds(self) -> list[str]:
        return [kind for kind in self.pii_redacted.split(",") if kind]


class ManagementAction(models.TextChoices):
    CONNECTION_CREATED = "connection.created", "Connection created"
    CONNECTION_UPDATED = "connection.updated", "Connection edited"
    CONNECTION_DELETED = "connection.deleted", "Connection deleted"
    CONNECTION_CREDENTIALS_CHANGED = "connection.credentials_changed", "Credentials changed"
    ENDPOINT_CREATED = "endpoint.created", "Endpoint created"
    ENDPOINT_UPDATED = "endpoint.updated", "Endpoint changed"
    ENDPOINT_DELETED = "endpoint.deleted", "Endpoint deleted"
    ENDPOINT_ENTRIES_CHANGED = "endpoint.entries_changed", "Tools toggled or edited"
    SESSION_REVOKED = "session.revoked", "Session revoked"
    TOKEN_CREATED = "token.created", "Token created"
    TOKEN_REVOKED = "token.revoked", "Token revoked"


class ManagementEvent(models.Model):
    """A change made by a person (or the system, ``actor_id`` None) to the organisation's
    configuration. ``details`` never holds a secret value: only which fields changed."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    at = models.DateTimeField()
    organization_id = models.UUIDField()
    actor_id = models.IntegerField(null=True, blank=True)
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=48, choices=ManagementAction.choices)
    target_type = models.CharField(max_length=32)
    target_id = models.CharField(max_length=64, blank=True)
    target_name = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)
    text_replaced = models.BooleanField(default=False)  # see AuditRecord.text_replaced

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["organization_id", "-at", "-id"], name="audit_event_org_at")
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} {self.target_name}"


class QuarantinedSegment(models.Model):
    """Records of one spool segment that could not be stored, for one organisation.

    A segment whose insert fails twice for a reason other than the database being
    unreachable is stored record by record; the records that still fail are moved
    to the ``quarantine`` folder beside the spool (on ``host``) and counted here,
    one row per organisation they belong to (``organization_id`` None when a
    record named none it could be read as), so its admins see what is missing.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    at = models.DateTimeField()
    organization_id = models.UUIDField(null=True, blank=True)
    host = models.CharField(max_length=200, blank=True)
    segment = models.CharField(max_length=200)
    records = models.PositiveIntegerField()
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["organization_id", "-at"], name="audit_quarantine_org_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.segment}: {self.records} records"


class AuditPolicy(models.Model):
    """An organisation's audit settings: how many days records are kept (default 90)."""

    organization = models.OneToOneField(
        "oauth.Organization", on_delete=models.CASCADE, related_name="audit_policy"
    )
    retention_days = models.PositiveIntegerField(
        default=DEFAULT_RETENTION_DAYS,
        validators=[MinValueValidator(1), MaxValueValidator(36500)],
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "audit policies"

    def __str__(self) -> str:
        return f"{self.organization_id}: {self.retention_days} days"
