"""Upstream MCP servers registered by an organisation."""

from __future__ import annotations

import shlex
import uuid
from typing import Any

from django.conf import settings
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
    # The server protects itself with the MCP authorization spec: the gateway signs in to
    # the server's own authorization server (discovery, registration, code + PKCE).
    OAUTH = "oauth", "OAuth (sign in to the server)"


class CredentialMode(models.TextChoices):
    SHARED = "shared", "Shared: one credential for everyone"
    PERSONAL = "personal", "Personal: each user brings their own"


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
    credential_mode = models.CharField(
        max_length=16, choices=CredentialMode.choices, default=CredentialMode.SHARED
    )
    status = models.CharField(
        max_length=16, choices=ConnectionStatus.choices, default=ConnectionStatus.UNKNOWN
    )
    # The API distinguishes "no instructions" (null) from text, hence null on a text field.
    instructions = models.TextField(null=True, blank=True)  # noqa: DJ001
    last_health_check_at = models.DateTimeField(null=True, blank=True)
    credential = EncryptedJSONField(null=True, blank=True)
    # Upstream OAuth: how the gateway is registered with the server's authorization server,
    # ``{"method": "manual" | "cimd" | "dcr", "client_id", "client_secret", "issuer",
    # "token_endpoint_auth_method"}`` (encrypted: it may hold a client secret), and the
    # scopes to ask for (blank: what the server advertises).
    oauth_client = EncryptedJSONField(null=True, blank=True)
    oauth_scopes = models.CharField(max_length=1000, blank=True)
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
    def is_personal(self) -> bool:
        return self.credential_mode == CredentialMode.PERSONAL

    @property
    def is_oauth(self) -> bool:
        return self.auth_type == AuthType.OAUTH

    def _oauth_client(self) -> dict[str, Any]:
        return self.oauth_client if isinstance(self.oauth_client, dict) else {}

    @property
    def oauth_client_id(self) -> str | None:
        """The client id the gateway uses with the server's authorization server, if any."""
        value = self._oauth_client().get("client_id")
        return value if isinstance(value, str) and value else None

    @property
    def oauth_client_secret(self) -> str | None:
        value = self._oauth_client().get("client_secret")
        return value if isinstance(value, str) and value else None

    @property
    def oauth_client_secret_is_set(self) -> bool:
        return self.oauth_client_secret is not None

    @property
    def oauth_registration(self) -> str | None:
        """How the client id was obtained: manual (an admin entered it), cimd or dcr."""
        value = self._oauth_client().get("method")
        return value if isinstance(value, str) and value else None

    @property
    def token_is_set(self) -> bool:
        return self.token is not None or self.credential_unreadable

    @property
    def headers_are_set(self) -> bool:
        return bool(self.headers) or self.credential_unreadable


class CredentialKind(models.TextChoices):
    TOKEN = "token", "Personal token"
    OAUTH = "oauth", "OAuth sign-in"


class CredentialState(models.TextChoices):
    VALID = "valid", "Valid"
    NEEDS_REAUTH = "needs_reauth", "Needs re-authorization"


class UpstreamCredential(models.Model):
    """A credential the gateway holds for one connection and uses on its upstream calls.

    In personal mode each user has their own (``user`` set): a token they pasted
    (``kind`` token, ``secret`` = ``{"token"}``) or the tokens of their sign-in to
    the server (``kind`` oauth, ``secret`` = ``{"access_token", "refresh_token",
    "scope"}``). A shared-mode OAuth connection has one row with ``user`` null.
    ``secret`` is encrypted at rest and never shown; ``expires_at`` (the access
    token's expiry) and ``state`` are not secret, so the refresh task can select by them.
    A failed refresh sets ``needs_reauth`` with a short ``state_reason``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="upstream_credentials"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="upstream_credentials",
    )
    kind = models.CharField(max_length=16, choices=CredentialKind.choices)
    secret = EncryptedJSONField()
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    state = models.CharField(
        max_length=16, choices=CredentialState.choices, default=CredentialState.VALID
    )
    state_reason = models.CharField(max_length=300, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    # Claimed by the one process refreshing it (rotating refresh tokens are single-use).
    refresh_claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["connection", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "user"],
                condition=Q(user__isnull=False),
                name="upstream_credential_one_per_user",
            ),
            models.UniqueConstraint(
                fields=["connection"],
                condition=Q(user__isnull=True),
                name="upstream_credential_one_shared",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.kind} credential of {self.user_id or 'the connection'} for {self.connection_id}"
        )

    def _secret(self) -> dict[str, Any]:
        return self.secret if isinstance(self.secret, dict) else {}

    @property
    def unreadable(self) -> bool:
        return isinstance(self.secret, UnreadableSecret)

    @property
    def bearer(self) -> str | None:
        """What goes after ``Authorization: Bearer``: the pasted token or the access token."""
        key = "token" if self.kind == CredentialKind.TOKEN else "access_token"
        value = self._secret().get(key)
        return value if isinstance(value, str) and value else None

    @property
    def refresh_token(self) -> str | None:
        value = self._secret().get("refresh_token")
        return value if isinstance(value, str) and value else None

    @property
    def scope(self) -> str:
        value = self._secret().get("scope")
        return value if isinstance(value, str) else ""

    def secret_values(self) -> list[str]:
        """The secret strings of this credential (for the activity log's redactor); the
        token endpoint and resource URLs stored beside them are not secret."""
        secret = self._secret()
        keys = ("token", "access_token", "refresh_token")
        return [v for k in keys if isinstance(v := secret.get(k), str) and v]


class UpstreamOAuthFlow(models.Model):
    """One sign-in to an upstream's authorization server, between the redirect and the callback.

    Found by the SHA-256 of its ``state`` (the state itself is never stored), bound
    to the user who started it, used once (deleted when the callback arrives) and
    short-lived. ``secret`` holds the PKCE code verifier, encrypted. ``shared``: the
    admin is connecting the connection's shared credential, not their own.
    """

    state_digest = models.CharField(max_length=64, unique=True)
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    shared = models.BooleanField(default=False)
    secret = EncryptedJSONField()
    issuer = models.CharField(max_length=2000)
    token_endpoint = models.CharField(max_length=2000)
    redirect_uri = models.CharField(max_length=2000)
    resource = models.CharField(max_length=2000)
    scope = models.CharField(max_length=1000, blank=True)
    # The issuer sends ``iss`` back with the code (RFC 9207): then it is required.
    iss_required = models.BooleanField(default=False)
    return_to = models.CharField(max_length=2000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"sign-in of {self.user_id} to {self.connection_id}"


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
    # The precise failure on the wire (HTTP status and body, parse error, session
    # problem) for admins; ``error`` is the short reason everyone sees.
    detail = models.TextField(blank=True)
    protocol_version = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["-checked_at"]
        indexes = [models.Index(fields=["connection", "-checked_at"], name="health_check_recent")]

    def __str__(self) -> str:
        return f"{self.connection_id} {'ok' if self.ok else self.error_kind} at {self.checked_at}"
