"""``manage.py load_demo``: the demo organisation with the demo upstream MCP server."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from connections import services
from connections.models import Connection
from oauth.models import Organization, Role
from oauth.services import membership_set, organization_create

DEMO_SLUG = "demo"
DEMO_CONNECTION = "Acme orders"


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
            services.connection_create(
                organization=organization, name=DEMO_CONNECTION, server_url=url
            )
        elif connection.server_url != url:
            services.connection_update(connection=connection, server_url=url)
        self.stdout.write(
            f"Demo organisation {organization.name!r} has {DEMO_CONNECTION!r} at {url}."
        )
