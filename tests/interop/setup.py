"""Provision the gateway side of an interop run; runs inside Django.

``.ci/interop`` (through ``python -m tests.interop.run``) runs it as
``manage.py shell -c "from tests.interop.setup import main; main()"`` with
``INTEROP_PLAN`` (a JSON file: the upstreams and the clients) and ``INTEROP_TOKEN_FILE``
(where the API token goes, mode 0600) in the environment; it prints one JSON line:
``{"connections": {upstream: {"id", "ok", "error", "tools"}}, "endpoints": {"<upstream>
<client>": {"id", "slug"}}}``.

The same services and helpers as the conformance run (tests/conformance/setup.py): an
organisation with an admin, one connection per upstream (health-checked, which stores the
catalog the gateway serves), and one endpoint per upstream and client with names
unprefixed and every entry enabled — its own, so that one client's list_changed toggle
cannot change what another client lists — then an API token.
``INTEROP_TEARDOWN=1`` only removes a previous run's organisation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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


def provision(plan: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Create the run's organisation, connections, endpoints and token."""
    organization, user = organization_with_admin(
        slug=ORGANIZATION_SLUG, name="Interop CI", username=USERNAME
    )
    connections: dict[str, Any] = {}
    endpoints: dict[str, Any] = {}
    for upstream in plan["upstreams"]:
        name = upstream["name"]
        reach: dict[str, Any]
        if upstream["transport"] == "stdio":
            reach = {"command": upstream["command"], "args": upstream["args"], "env": {}}
        else:
            reach = {"server_url": upstream["url"]}
        connection = connection_create(
            organization=organization,
            name=name,
            slug=name.replace("-", "_"),
            transport=upstream["transport"],
            **reach,
        )
        check = connection_check_health(connection=connection)
        connections[name] = {"id": str(connection.pk), "ok": check.ok, "error": check.error}
        for client in plan["clients"]:
            endpoint, entries, _ = endpoint_serving_all(
                organization=organization,
                connection=connection,
                slug=endpoint_slug(name, client),
                name=f"{name} for {client}",
            )
            connections[name]["entries"] = entries
            endpoints[f"{name} {client}"] = {"id": str(endpoint.pk), "slug": endpoint.slug}
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
