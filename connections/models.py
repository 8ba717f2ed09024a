"""Upstream MCP servers registered by an organisation."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.db.models.functions import Lower

from connections.fields import EncryptedJSONField, UnreadableSecret


class Transport(models.TextChoices):
    STREAMABLE_HTTP = "streamable-http", "Streamable HTTP"
    SSE = "sse", "HTTP + SSE (legacy)"


class AuthType(models.TextChoices):
    NONE = "none", "None"
    BEARER = "bearer", "Bearer token"


class ConnectionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    ERROR = "error", "Error"
    UNKNOWN = "unknown", "Unknown"


class Connection(models.Model):
    """An upstream MCP server: where it is, how to reach it, and whether it is healthy.

    ``credential`` holds the shared credential as ``{"token": str | None,
    "headers": {name: value}}``, encrypted at rest and never shown back.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "oauth.Organization", on_delete=models.CASCADE, related_name="connections"
    )
    name = models.CharField(max_length=100)
    server_url = models.URLField(max_length=2000)
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
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                Lower("name"), "organization", name="connection_name_unique_per_organization"
            )
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
    def token_is_set(self) -> bool:
        return self.token is not None or self.credential_unreadable

    @property
    def headers_are_set(self) -> bool:
        return bool(self.headers) or self.credential_unreadable
