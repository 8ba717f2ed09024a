"""Provision the gateway side of a conformance run; runs inside Django.

``.ci/conformance`` runs it as
``manage.py shell -c "from tests.conformance.setup import main; main()"`` with
``CONFORMANCE_UPSTREAM_URL`` (the fixture upstream's MCP URL) and
``CONFORMANCE_TOKEN_FILE`` (where to write the API token, mode 0600) and
optionally ``CONFORMANCE_PASSWORD`` (the user's password, for the consent page of
the authorization scenarios) in the environment, and reads one JSON line from
stdout: ``{"slug": ..., "tools": n, ...}``.

It goes through the same services as the UI and the API: an organisation with a user
as admin, a connection to the fixture upstream, a health check (which stores the
catalog the gateway serves from), an endpoint with ``prefix_names`` off — the suite
calls the fixture tools by their own names — and every catalog entry enabled, then an
API token for the user. A previous run's organisation is removed first, so the script
can run again on the same database (``CONFORMANCE_TEARDOWN=1`` only removes it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model

from connections.models import CatalogEntry, Connection
from connections.services import connection_check_health, connection_create
from endpoints.models import Endpoint
from endpoints.services import endpoint_create, endpoint_entries_set_enabled
from oauth.models import Organization, Role
from oauth.services import api_token_create, membership_set, organization_create

ORGANIZATION_SLUG = "conformance-ci"
USERNAME = "conformance-ci"
ENDPOINT_SLUG = "conformance"


def teardown() -> None:
    """Remove what a previous run created (the organisation cascades to the rest)."""
    remove_organization(slug=ORGANIZATION_SLUG, username=USERNAME)


def remove_organization(*, slug: str, username: str) -> None:
    """Remove an organisation (it cascades to its connections, endpoints and tokens) and a user."""
    Organization.objects.filter(slug=slug).delete()
    get_user_model().objects.filter(username=username).delete()


def organization_with_admin(
    *, slug: str, name: str, username: str, password: str | None = None
) -> tuple[Organization, Any]:
    """A new organisation with a new user as its admin; a previous one of that slug goes first.

    Without ``password`` the user cannot sign in (API tokens only).
    """
    remove_organization(slug=slug, username=username)
    user = get_user_model().objects.create(username=username)
    if password:  # the authorization scenarios sign in at the consent page
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save(update_fields=["password"])
    organization = organization_create(name=name, slug=slug)
    membership_set(organization=organization, user=user, role=Role.ADMIN)
    return organization, user


def endpoint_serving_all(
    *,
    organization: Organization,
    connection: Connection,
    slug: str,
    name: str,
    description: str = "",
) -> tuple[Endpoint, int, Any]:
    """An endpoint of one connection, names unprefixed, every catalog entry enabled.

    Returns the endpoint, the number of entries and the toggle update.
    """
    endpoint = endpoint_create(
        organization=organization,
        name=name,
        description=description,
        slug=slug,
        connection_ids=[str(connection.pk)],
        prefix_names=False,
    )
    entries = list(CatalogEntry.objects.filter(connection=connection).values_list("pk", flat=True))
    update = endpoint_entries_set_enabled(endpoint=endpoint, entry_ids=entries, enabled=True)
    return endpoint, len(entries), update


def provision(*, upstream_url: str) -> tuple[dict[str, object], str]:
    """Create the run's organisation, endpoint and token; a summary and the raw token."""
    organization, user = organization_with_admin(
        slug=ORGANIZATION_SLUG,
        name="Conformance CI",
        username=USERNAME,
        password=os.environ.get("CONFORMANCE_PASSWORD"),
    )
    connection = connection_create(
        organization=organization,
        name="Conformance fixture",
        slug="fixture",
        server_url=upstream_url,
    )
    check = connection_check_health(connection=connection)
    if not check.ok:
        raise SystemExit(f"The fixture upstream did not answer the health check: {check.error}")
    endpoint, entries, update = endpoint_serving_all(
        organization=organization,
        connection=connection,
        slug=ENDPOINT_SLUG,
        name="Conformance",
        description="The conformance suite's fixture, names unprefixed.",
    )
    _, raw = api_token_create(organization=organization, user=user, name="conformance suite")
    summary: dict[str, object] = {
        "slug": endpoint.slug,
        "entries": entries,
        "enabled": update.changed,
        "skipped": len(update.skipped),
    }
    return summary, raw


def main() -> None:
    """Entry point of ``manage.py shell -c``; prints one JSON line."""
    if os.environ.get("CONFORMANCE_TEARDOWN") == "1":
        teardown()
        print(json.dumps({"removed": ORGANIZATION_SLUG}))
        return
    summary, raw = provision(upstream_url=os.environ["CONFORMANCE_UPSTREAM_URL"])
    token_file = Path(os.environ["CONFORMANCE_TOKEN_FILE"])
    token_file.touch(mode=0o600)
    token_file.write_text(raw)
    print(json.dumps(summary))
