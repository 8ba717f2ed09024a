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

from django.contrib.auth import get_user_model

from connections.models import CatalogEntry
from connections.services import connection_check_health, connection_create
from endpoints.services import endpoint_create, endpoint_entries_set_enabled
from oauth.models import Organization, Role
from oauth.services import api_token_create, membership_set, organization_create

ORGANIZATION_SLUG = "conformance-ci"
USERNAME = "conformance-ci"
ENDPOINT_SLUG = "conformance"


def teardown() -> None:
    """Remove what a previous run created (the organisation cascades to the rest)."""
    Organization.objects.filter(slug=ORGANIZATION_SLUG).delete()
    get_user_model().objects.filter(username=USERNAME).delete()


def provision(*, upstream_url: str) -> tuple[dict[str, object], str]:
    """Create the run's organisation, endpoint and token; a summary and the raw token."""
    teardown()
    User = get_user_model()
    user = User.objects.create(username=USERNAME)
    password = os.environ.get("CONFORMANCE_PASSWORD")
    if password:  # the authorization scenarios sign in at the consent page
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save(update_fields=["password"])
    organization = organization_create(name="Conformance CI", slug=ORGANIZATION_SLUG)
    membership_set(organization=organization, user=user, role=Role.ADMIN)
    connection = connection_create(
        organization=organization,
        name="Conformance fixture",
        slug="fixture",
        server_url=upstream_url,
    )
    check = connection_check_health(connection=connection)
    if not check.ok:
        raise SystemExit(f"The fixture upstream did not answer the health check: {check.error}")
    endpoint = endpoint_create(
        organization=organization,
        name="Conformance",
        description="The conformance suite's fixture, names unprefixed.",
        slug=ENDPOINT_SLUG,
        connection_ids=[str(connection.pk)],
        prefix_names=False,
    )
    entries = list(CatalogEntry.objects.filter(connection=connection).values_list("pk", flat=True))
    update = endpoint_entries_set_enabled(endpoint=endpoint, entry_ids=entries, enabled=True)
    _, raw = api_token_create(organization=organization, user=user, name="conformance suite")
    summary: dict[str, object] = {
        "slug": endpoint.slug,
        "entries": len(entries),
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
