"""Provision the gateway side of an interop run; runs inside Django.

``.ci/interop`` (through ``python -m tests.interop.run``) runs it as
``manage.py shell -c "from tests.interop.setup import main; main()"`` with
``INTEROP_PLAN`` (a JSON file: the upstreams and the clients) and ``INTEROP_TOKEN_FILE``
(where the API token goes, mode 0600) in the environment; it prints one JSON line:
``{"connections": {"<upstream> <client>": {"id", "ok", "error", "entries"}}, "endpoints":
{"<upstream> <client>": {"id", "slug"}}}``.

The same services and helpers as the conformance run (tests/conformance/setup.py): an
organisation with an admin, then for each upstream and client a connection (health-checked,
which stores the catalog the gateway serves) and an endpoint serving it with names
unprefixed and every entry enabled — the pair's own, so that one client's failing call or
list_changed toggle cannot change what another client sees — then an API token.
``INTEROP_TEARDOWN=1`` only removes a previous run's organisation.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from django.db import close_old_connections

from connections.models import Connection
from connections.services import connection_check_health, connection_create
from oauth.services import api_token_create
from tests.conformance.setup import (
    endpoint_serving_all,
    organization_with_admin,
    remove_organization,
)
from tests.interop.matrix import endpoint_slug

ORGANIZATION_SLUG = "interop-ci"
USERNAME = "interop-ci"
CHECKS_AT_ONCE = 8


def provision(plan: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Create the run's organisation, connections, endpoints and token."""
    organization, user = organization_with_admin(
        slug=ORGANIZATION_SLUG, name="Interop CI", username=USERNAME
    )
    connections: dict[str, Any] = {}
    endpoints: dict[str, Any] = {}
    created: dict[str, Connection] = {}
    for upstream in plan["upstreams"]:
        name = upstream["name"]
        reach: dict[str, Any]
        if upstream["transport"] == "stdio":
            reach = {"command": upstream["command"], "args": upstream["args"], "env": {}}
        else:
            reach = {"server_url": upstream["url"]}
        for client in plan["clients"]:
            pair = endpoint_slug(name, client)
            # A connection per pair too: the pool keeps one upstream session per connection,
            # so one client's failing call cannot reopen the session another client is using.
            created[f"{name} {client}"] = connection_create(
                organization=organization,
                name=f"{name} for {client}",
                slug=pair.replace("-", "_"),
                transport=upstream["transport"],
                **reach,
            )

    def check(connection: Connection) -> Any:
        try:
            return connection_check_health(connection=connection)
        finally:
            close_old_connections()

    # The checks wait on the upstreams, not the CPU: a few at a time.
    with ThreadPoolExecutor(max_workers=CHECKS_AT_ONCE) as pool:
        checks = dict(zip(created, pool.map(check, created.values()), strict=True))
    for pair, connection in created.items():
        name, client = pair.split(" ")
        endpoint, entries, _ = endpoint_serving_all(
            organization=organization,
            connection=connection,
            slug=endpoint_slug(name, client),
            name=f"{name} for {client}",
        )
        connections[pair] = {
            "id": str(connection.pk),
            "ok": checks[pair].ok,
            "error": checks[pair].error,
            "entries": entries,
        }
        endpoints[pair] = {"id": str(endpoint.pk), "slug": endpoint.slug}
    _, raw = api_token_create(organization=organization, user=user, name="interop suite")
    return {"connections": connections, "endpoints": endpoints}, raw


def main() -> None:
    """Entry point of ``manage.py shell -c``; prints one JSON line."""
    if os.environ.get("INTEROP_TEARDOWN") == "1":
        remove_organization(slug=ORGANIZATION_SLUG, username=USERNAME)
        print(json.dumps({"removed": ORGANIZATION_SLUG}))
        return
    plan = json.loads(Path(os.environ["INTEROP_PLAN"]).read_text())
    summary, raw = provision(plan)
    token_file = Path(os.environ["INTEROP_TOKEN_FILE"])
    token_file.touch(mode=0o600)
    token_file.write_text(raw)
    print(json.dumps(summary))
