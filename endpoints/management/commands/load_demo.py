"""``manage.py load_demo``: the demo organisation with the demo upstream MCP server and an
endpoint serving its tools."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from mcp import Client

from connections import services
from connections.demo.upstream import server as demo_server
from connections.models import Connection
from connections.upstream import CatalogSnapshot, catalog_fetch_with
from endpoints import services as endpoint_services
from endpoints.models import Endpoint
from oauth.models import Organization, Role
from oauth.services import membership_set, organization_create

DEMO_SLUG = "demo"
DEMO_CONNECTION = "Acme orders"
DEMO_ENDPOINT = "Acme support (demo)"
DEMO_SERVED = [
    ("tool", "get_order_status"),
    ("tool", "check_inventory"),
    ("tool", "create_quote"),
    ("prompt", "customer_reply"),
    ("resource", "catalog://products"),
    ("resource_template", "orders://{order_id}"),
]


async def _demo_catalog() -> CatalogSnapshot:
    # In-process: the demo upstream is not listening yet when this runs.
    async with Client(demo_server) as client:
        return await catalog_fetch_with(client, call_timeout=10)


class Command(BaseCommand):
    help = (
        "Create (or refresh) the demo organisation and register the demo upstream MCP server "
        "(python -m connections.demo.upstream) as a connection. Idempotent."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        admin = User.objects.filter(is_superuser=True).order_by("pk").first()
        if admin is None:
            raise CommandError("Create the admin account first (manage.py ensure_admin).")
        organization = Organization.objects.filter(slug=DEMO_SLUG).first()
        if organization is None:
            organization = organization_create(name="Acme (demo)", slug=DEMO_SLUG)
        membership_set(organization=organization, user=admin, role=Role.ADMIN)

        url = f"http://127.0.0.1:{settings.GATEWAY_DEMO_PORT}/mcp"
        connection = Connection.objects.filter(
            organization=organization, name__iexact=DEMO_CONNECTION
        ).first()
        if connection is None:
            connection = services.connection_create(
                organization=organization, name=DEMO_CONNECTION, server_url=url
            )
        elif connection.server_url != url:
            services.connection_update(connection=connection, server_url=url)
        if not connection.catalog.exists():
            snapshot = async_to_sync(_demo_catalog)()
            services.connection_catalog_store(connection=connection, snapshot=snapshot)
        endpoint = Endpoint.objects.filter(organization=organization, name=DEMO_ENDPOINT).first()
        if endpoint is None:
            endpoint = endpoint_services.endpoint_create(
                organization=organization,
                name=DEMO_ENDPOINT,
                description="Order status, stock and quotes for the support team.",
                connection_ids=[connection.pk],
            )
            endpoint_services.endpoint_catalog_update(
                endpoint=endpoint,
                changes=[
                    endpoint_services.CatalogChange(
                        connection_id=connection.pk, kind=kind, key=key, enabled=True
                    )
                    for kind, key in DEMO_SERVED
                ],
            )
        self.stdout.write(
            f"Demo organisation {organization.name!r} has {DEMO_CONNECTION!r} at {url}; "
            f"MCP endpoint {endpoint.name!r} at {endpoint.url}."
        )
