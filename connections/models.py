"""Upstream MCP servers registered by an organisation."""

from __future__ import annotations

import shlex
import uuid
from typing import Any

from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from connections.fields import EncryptedJSONField, UnreadableSecret


class Transport(models.TextChoices):
    STREAMABLE_HTTP = "streamable-http", "Streamable HTTP"
    SSE = "sse", "HTTP + SSE (legacy)"
    # A command the gateway starts on its own host; only when GATEWAY_ALLOW_STDIO is on.
    STDIO = "stdio", "stdio (command on the gateway host)"


class AuthType(models.TextChoices):
    NONE = "none", "None"
    BEARER = "bearer", "Bearer token"


class ConnectionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    ERROR = "error", "Error"
    UNKNOWN = "unknown", "Unknown"


class Connection(models.Model):
    """An upstream MCP server: where it is, how to reach it, and whether it is healthy.

    An HTTP server (Streamable HTTP or SSE) has a ``server_url``; a stdio server
    has a ``command`` and ``args`` that the gateway runs as a child process.
    ``credential`` holds the shared credential as ``{"token": str | None,
    "headers": {name: value}}`` for HTTP, ``{"env": {NAME: value}}`` for stdio
    (environment variables of the child), encrypted at rest and never shown back.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "oauth.Organization", on_delete=models.CASCADE, related_name="connections"
    )
    name = models.CharField(max_length=100)
    # Prefix of the public names of this server's tools on endpoints
    # (``<slug>__<tool>``); stable when the name changes, so clients keep working.
    slug = models.SlugField(max_length=40)
    # Blank for stdio servers, which have a command instead.
    server_url = models.URLField(max_length=2000, blank=True)
    command = models.CharField(max_length=1000, blank=True)
    args = models.JSONField(default=list, blank=True)
    transport = models.CharField(
        max_length=32, choices=Transport.choices, default=Transport.STREAMABLE_HTTP
    )
    auth_type = models.CharField(max_length=16, choices=AuthType.choices, default=AuthType.NONE)
    status = models.CharField(
        max_length=16, choices=ConnectionStatus.choices, default=ConnectionStatus.UNKNOWN
    )
    # The API distinguishes "no instructions" (null) from text, hence null on a text field.
    instructions = models.TextField(null=True, blank=True)  # noqa: DJ001
    last_health_check_at = models.DateTimeField(null=True, blank=True)
    credential = EncryptedJSONField(null=True, blank=True)
    connect_timeout_seconds = models.PositiveIntegerField(default=10)
    call_timeout_seconds = models.PositiveIntegerField(default=60)

    # What the server said about itself at the last successful check.
    server_name = models.CharField(max_length=200, blank=True)
    server_version = models.CharField(max_length=100, blank=True)
    protocol_version = models.CharField(max_length=32, blank=True)
    server_instructions = models.TextField(blank=True)
    catalog_refreshed_at = models.DateTimeField(null=True, blank=True)

    # Health checks: the last outcome, and the scheduling of the next one.
    last_check_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_check_error = models.CharField(max_length=500, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    check_claimed_until = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                Lower("name"), "organization", name="connection_name_unique_per_organization"
            ),
            models.UniqueConstraint(
                fields=["organization", "slug"], name="connection_slug_unique_per_organization"
            ),
            # A stdio server is a command, every other transport a URL.
            models.CheckConstraint(
                condition=(Q(transport="stdio") & ~Q(command=""))
                | (~Q(transport="stdio") & ~Q(server_url="")),
                name="connection_reach_matches_transport",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def _credential(self) -> dict[str, Any]:
        return self.credential if isinstance(self.credential, dict) else {}

    @property
    def credential_unreadable(self) -> bool:
        """True when the stored credential needs an encryption key that is not configured."""
        return isinstance(self.credential, UnreadableSecret)

    @property
    def token(self) -> str | None:
        token = self._credential().get("token")
        return token if isinstance(token, str) and token else None

    @property
    def headers(self) -> dict[str, str]:
        headers = self._credential().get("headers")
        return dict(headers) if isinstance(headers, dict) else {}

    @property
    def env(self) -> dict[str, str]:
        env = self._credential().get("env")
        return dict(env) if isinstance(env, dict) else {}

    @property
    def env_names(self) -> list[str]:
        """The names of the stored environment variables (their values are never shown)."""
        return sorted(self.env)

    @property
    def env_is_set(self) -> bool:
        return bool(self.env) or self.credential_unreadable

    @property
    def is_stdio(self) -> bool:
        return self.transport == Transport.STDIO

    @property
    def location(self) -> str:
        """Where the server is, for people: its URL, or its command line."""
        if self.is_stdio:
            return shlex.join([self.command, *self.args])
        return self.server_url

    @property
    def token_is_set(self) -> bool:
        return self.token is not None or self.credential_unreadable

    @property
    def headers_are_set(self) -> bool:
        return bool(self.headers) or self.credential_unreadable


class CatalogKind(models.TextChoices):
    TOOL = "tool", "Tool"
    RESOURCE = "resource", "Resource"
    RESOURCE_TEMPLATE = "resource_template", "Resource template"
    PROMPT = "prompt", "Prompt"


class CatalogState(models.TextChoices):
    OK = "ok", "OK"
    CHANGED = "changed", "Changed upstream"
    MISSING = "missing", "Missing upstream"


class CatalogEntry(models.Model):
    """One tool, resource, resource template or prompt that an upstream server offers.

    ``key`` identifies it within the server (a tool or prompt name, a resource
    URI, a URI template); ``definition`` is the upstream's definition as JSON and
    ``definition_hash`` its SHA-256 over canonical JSON, so a change upstream is
    noticed. A changed entry keeps the definition it replaced in
    ``previous_definition`` for review; an entry the server stopped listing is
    kept as ``missing`` (endpoint toggles refer to it).
    """

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="catalog")
    kind = models.CharField(max_length=24, choices=CatalogKind.choices)
    key = models.CharField(max_length=2048)
    name = models.CharField(max_length=512, blank=True)
    title = models.CharField(max_length=512, blank=True)
    description = models.TextField(blank=True)
    definition = models.JSONField(default=dict)
    definition_hash = models.CharField(max_length=64)
    previous_definition = models.JSONField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=CatalogState.choices, default=CatalogState.OK)
    position = models.PositiveIntegerField(default=0)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    changed_at = models.DateTimeField(null=True, blank=True)
    missing_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["kind", "position", "key"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "kind", "key"], name="catalog_entry_unique_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"


class HealthCheck(models.Model):
    """The outcome of one health check of a connection (the last few are kept)."""

    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="health_checks"
    )
    checked_at = models.DateTimeField(db_index=True)
    ok = models.BooleanField()
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error_kind = models.CharField(max_length=32, blank=True)
    error = models.CharField(max_length=500, blank=True)
    protocol_version = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["-checked_at"]
        indexes = [models.Index(fields=["connection", "-checked_at"], name="health_check_recent")]

    def __str__(self) -> str:
        return f"{self.connection_id} {'ok' if self.ok else self.error_kind} at {self.checked_at}"
