"""People and access: organisations, memberships, API tokens and OAuth storage.

The OAuth models swap django-oauth-toolkit's defaults for the gateway's own so
that the authorization of AI clients can extend them with plain migrations.
"""

from __future__ import annotations

import hashlib
import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from oauth2_provider.models import (
    AbstractAccessToken,
    AbstractApplication,
    AbstractGrant,
    AbstractIDToken,
    AbstractRefreshToken,
)


class Organization(models.Model):
    """A tenant: every connection, endpoint and log record belongs to one."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    AUDITOR = "auditor", "Auditor"


class Membership(models.Model):
    """A user's role in one organisation: admin manages, member uses, auditor reads logs."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


class ApiToken(models.Model):
    """A bearer token for the REST API, acting for its user in one organisation.

    Only a SHA-256 hash of the token is stored; the token itself is shown once,
    when it is created. ``prefix`` (the first characters) identifies it in lists.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_tokens"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    call_count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


# A client lists the few addresses its own app returns to; one registration once
# carried 5,000, each checked on every authorization.
MAX_REDIRECT_URIS = 10
MAX_REDIRECT_URI_LENGTH = 2000
# Plain http is only for an app on the user's own computer (RFC 8252 §7.3, RFC 9700 §2.1).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def authorization_code_digest(code: str) -> str:
    """What is kept of an authorization code once it is exchanged."""
    return hashlib.sha256(code.encode()).hexdigest()


def redirect_uri_is_loopback(uri: str) -> bool:
    """Whether ``uri`` returns to this computer (127.0.0.1, [::1] or localhost)."""
    try:
        host = urlsplit(uri).hostname
    except ValueError:
        return False
    return host is not None and host.lower() in LOOPBACK_HOSTS


def redirect_uri_refusal(uri: str) -> str | None:
    """Why an authorization code must not be sent to ``uri``, or None.

    https anywhere; http only to a loopback host, where nothing crosses a network;
    the private app schemes of ``GATEWAY_OAUTH_REDIRECT_SCHEMES`` (``cursor:``, ...)
    as DOT checks them. The URI's other rules (no fragment, exact match) are DOT's.
    """
    if len(uri) > MAX_REDIRECT_URI_LENGTH:
        return f"A redirect URI may have at most {MAX_REDIRECT_URI_LENGTH} characters."
    try:
        scheme = urlsplit(uri).scheme.lower()
    except ValueError:
        return f"{uri} is not a valid URI."
    if scheme == "http" and not redirect_uri_is_loopback(uri):
        return (
            f"{uri} would send the authorization code over plain http to another computer: "
            "use https (plain http is only for 127.0.0.1, [::1] and localhost)."
        )
    return None


class OAuthApplication(AbstractApplication):
    """An OAuth client (an AI client such as Claude or an agent).

    Clients register themselves (dynamic registration, or a client ID metadata
    document); ``registration_source`` says which, and ``last_used_at`` lets a
    periodic task delete registrations nobody ever used. Every way in (DCR, its
    RFC 7592 update, a metadata document, the admin) runs ``clean``, which holds
    the redirect URIs to RFC 9700 before DOT's own checks.
    """

    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractApplication.Meta):
        verbose_name = "OAuth application"

    def clean(self) -> None:
        uris = self.redirect_uris.split()
        if len(uris) > MAX_REDIRECT_URIS:
            # Before DOT validates each one: refusing 5,000 should cost nothing.
            raise ValidationError(
                {"redirect_uris": [f"Register at most {MAX_REDIRECT_URIS} redirect URIs."]}
            )
        problems = [problem for uri in uris if (problem := redirect_uri_refusal(uri))]
        if problems:
            raise ValidationError({"redirect_uris": problems})
        super().clean()


class AccessDuration(models.IntegerChoices):
    """How long an authorization lasts, chosen by the user on the consent page."""

    HOUR = 3600, "1 hour"
    DAY = 86400, "1 day"
    WEEK = 7 * 86400, "7 days"
    MONTH = 30 * 86400, "30 days"
    QUARTER = 90 * 86400, "90 days"


class OAuthAuthorization(models.Model):  # type: ignore[django-manager-missing]
    """One consent: a user let one client use one endpoint until ``expires_at``.

    It is the "authorized session" admins see and revoke. Every token issued
    under it (the first pair and each rotated refresh) points here, and none
    outlives ``expires_at``: after it the client must ask the user again.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(
        "oauth.OAuthApplication", on_delete=models.CASCADE, related_name="authorizations"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oauth_authorizations"
    )
    endpoint = models.ForeignKey(
        "endpoints.Endpoint", on_delete=models.CASCADE, related_name="authorizations"
    )
    resource = models.URLField(max_length=500)
    scope = models.TextField(blank=True)
    client_name = models.CharField(max_length=255, blank=True)
    # SHA-256 of the authorization code it came from: a replayed code finds it and
    # revokes it, also after the code itself was deleted.
    code_digest = models.CharField(max_length=64, blank=True, db_index=True)
    granted_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    call_count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-granted_at"]
        indexes = [models.Index(fields=["endpoint", "-granted_at"], name="authorization_endpoint")]

    def __str__(self) -> str:
        return f"{self.client_name or self.application_id} for {self.user_id} on {self.endpoint_id}"


class OAuthGrant(AbstractGrant):
    """An authorization code issued to a client, before it is exchanged for tokens.

    It carries what the user chose on the consent page: the endpoint and the
    access duration, which become an ``OAuthAuthorization`` at the exchange.
    ``consumed_at`` is set by the first exchange attempt, successful or not: a
    code gets one attempt (a wrong PKCE verifier burns it).
    """

    endpoint = models.ForeignKey(
        "endpoints.Endpoint", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    access_seconds = models.PositiveIntegerField(null=True, blank=True)
    consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractGrant.Meta):
        verbose_name = "OAuth grant"


class OAuthIDToken(AbstractIDToken):
    """An OpenID Connect ID token."""

    class Meta(AbstractIDToken.Meta):
        verbose_name = "OAuth ID token"


class OAuthAccessToken(AbstractAccessToken):
    """An access token a client presents on an MCP endpoint."""

    authorization = models.ForeignKey(
        OAuthAuthorization,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="access_tokens",
    )

    class Meta(AbstractAccessToken.Meta):
        verbose_name = "OAuth access token"


class OAuthRefreshToken(AbstractRefreshToken):
    """A refresh token, rotated on every use."""

    authorization = models.ForeignKey(
        OAuthAuthorization,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="refresh_tokens",
    )

    class Meta(AbstractRefreshToken.Meta):
        verbose_name = "OAuth refresh token"
