"""Endpoints: one MCP URL that federates several upstream servers, with a toggle per tool."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from oauth.models import AccessDuration


class EndpointAccess(models.TextChoices):
    ORGANIZATION = "organization", "Everyone in the organisation"
    MEMBERS = "members", "Chosen members"


class Endpoint(models.Model):
    """An MCP endpoint: the URL ``<GATEWAY_PUBLIC_URL>/mcp/<slug>`` handed to AI clients.

    It federates the tools, resources and prompts of its connections; each one
    is served only once an admin enables it (see ``EndpointToggle``). ``slug``
    is unique across all organisations because it is the URL. ``access`` says
    who may use it: the whole organisation, or the chosen ``members`` (admins
    always may). ``prefix_names`` off serves tool and prompt names without the
    ``<connection-slug>__`` prefix where no other connected server has the same name.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "oauth.Organization", on_delete=models.CASCADE, related_name="endpoints"
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    slug = models.SlugField(max_length=63, unique=True)
    connections = models.ManyToManyField(
        "connections.Connection",
        through="EndpointConnection",
        related_name="endpoints",
        blank=True,
    )
    access = models.CharField(
        max_length=16, choices=EndpointAccess.choices, default=EndpointAccess.ORGANIZATION
    )
    # Memberships rather than users: someone who leaves the organisation loses
    # access with their membership, and coming back does not restore it silently.
    members = models.ManyToManyField(
        "oauth.Membership", related_name="allowed_endpoints", blank=True
    )
    prefix_names = models.BooleanField(default=True)
    # The longest access a user may grant an AI client on the consent page.
    max_access_seconds = models.PositiveIntegerField(
        choices=AccessDuration.choices, default=AccessDuration.QUARTER
    )
    # Redact e-mail addresses, phone numbers, SSNs, card numbers and IP addresses in
    # results before they reach the client (and the activity log).
    pii_filter = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                Lower("name"),
                "organization",
                name="endpoint_name_unique_per_organization",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def url(self) -> str:
        """The URL AI clients use; its base is ``GATEWAY_PUBLIC_URL`` (right behind a proxy)."""
        return f"{settings.GATEWAY_PUBLIC_URL}/mcp/{self.slug}"

    @property
    def domain_url(self) -> str | None:
        """``https://<slug>.<GATEWAY_ENDPOINT_DOMAIN>/mcp``, for clients that need the path
        to be exactly ``/mcp``; None when no endpoint domain is configured."""
        domain = settings.GATEWAY_ENDPOINT_DOMAIN
        return f"https://{self.slug}.{domain}/mcp" if domain else None


class EndpointConnection(models.Model):
    """A connection federated by an endpoint (a connection may serve many endpoints)."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="links")
    connection = models.ForeignKey(
        "connections.Connection", on_delete=models.CASCADE, related_name="endpoint_links"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "connection"], name="endpoint_connection_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.endpoint_id} -> {self.connection_id}"


class EndpointToggle(models.Model):
    """What one endpoint does with one catalog entry (tool, resource, template or prompt).

    A row exists only once an admin touched the entry: no row means disabled,
    no alias, the upstream's description. ``enabled`` is the admin's intent;
    the entry is served only while the upstream definition still has the hash
    the admin enabled (``acknowledged_hash``): a definition that changed
    upstream holds it back ("changed upstream — review") until an admin accepts
    the new one, and ``acknowledged_definition`` keeps what was approved so the
    review shows both side by side. Rows refer to catalog entries, which the
    catalog refresh updates in place, so toggles survive refreshes.
    """

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="toggles")
    entry = models.ForeignKey(
        "connections.CatalogEntry", on_delete=models.CASCADE, related_name="endpoint_toggles"
    )
    enabled = models.BooleanField(default=False)
    alias = models.CharField(max_length=128, blank=True)
    # None means "the upstream's description"; an admin may also override it with text.
    description = models.TextField(null=True, blank=True)  # noqa: DJ001
    acknowledged_hash = models.CharField(max_length=64, blank=True)
    acknowledged_definition = models.JSONField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "entry"], name="endpoint_toggle_unique")
        ]

    def __str__(self) -> str:
        return f"{self.endpoint_id} {self.entry_id} {'on' if self.enabled else 'off'}"
