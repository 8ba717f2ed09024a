"""Provision the gateway's side of a benchmark run; runs inside Django.

``benchmarks/gateway_target.py`` runs this through
``manage.py shell -c "from benchmarks.gateway_setup import main; main()"`` with the
parameters in the ``BENCH_GATEWAY_SETUP`` environment variable (JSON:
``{"username", "organization", "upstreamUrls", "skipEndpoint"}``) and reads one JSON line
from stdout: ``{"organization": slug, "connectionIds": [...], "endpointSlug": slug}``
(``skipEndpoint`` checks everything but the endpoint: ``endpointSlug`` is then null).

It goes through the same services as the UI and the API: an organisation with the
benchmark user as admin, one connection per upstream URL, a health check of each (which
stores its catalog, so the gateway can serve ``tools/list`` without asking the upstream),
then the endpoint — the part the MCP transport's author fills in (see
``benchmark_endpoint_create``).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from connections.models import Connection
from connections.services import connection_check_health, connection_create
from oauth.models import Organization, Role
from oauth.services import membership_set, organization_create


def benchmark_endpoint_create(
    *, organization: Organization, connections: Sequence[Connection]
) -> str:
    """Create the benchmark's endpoint, every tool enabled, and return its slug."""
    from endpoints.selectors import endpoint_catalog_rows
    from endpoints.services import endpoint_create, endpoint_entries_set_enabled

    endpoint = endpoint_create(
        organization=organization,
        name=f"Bench {organization.slug}",
        connection_ids=[str(c.pk) for c in connections],
    )
    rows = endpoint_catalog_rows(endpoint=endpoint, group="tools")
    endpoint_entries_set_enabled(
        endpoint=endpoint, entry_ids=[r.entry_id for r in rows], enabled=True
    )
    return str(endpoint.slug)


@transaction.atomic
def _provision(*, username: str, organization_name: str, urls: Sequence[str]) -> dict[str, Any]:
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    organization = organization_create(name=organization_name)
    membership_set(organization=organization, user=user, role=Role.ADMIN)
    connections = [
        connection_create(
            organization=organization,
            name=f"Bench upstream {index}",
            slug=f"up{index}",
            server_url=url,
        )
        for index, url in enumerate(urls)
    ]
    return {
        "organization": organization.slug,
        "connections": connections,
        "organizationObject": organization,
    }


def main() -> None:
    """Entry point of ``manage.py shell -c``; prints one JSON line (the last line of output)."""
    parameters = json.loads(os.environ["BENCH_GATEWAY_SETUP"])
    urls: list[str] = parameters["upstreamUrls"]
    organization_name = parameters.get("organization") or f"Benchmark {secrets.token_hex(3)}"
    provisioned = _provision(
        username=parameters["username"], organization_name=organization_name, urls=urls
    )
    connections: list[Connection] = provisioned["connections"]
    for connection in connections:
        check = connection_check_health(connection=connection)
        if not check.ok:
            print(f"health check of {connection.server_url} failed: {check.error}", file=sys.stderr)
            sys.exit(3)
    slug = None
    if not parameters.get("skipEndpoint"):
        slug = benchmark_endpoint_create(
            organization=provisioned["organizationObject"], connections=connections
        )
    result = {
        "organization": provisioned["organization"],
        "connectionIds": [str(c.pk) for c in connections],
        "endpointSlug": slug,
    }
    print(json.dumps(result), flush=True)
