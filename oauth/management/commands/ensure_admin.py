"""``manage.py ensure_admin``: create the first admin account if there is none."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from oauth.models import Organization, Role
from oauth.services import membership_set, organization_create, user_ensure_admin


class Command(BaseCommand):
    help = (
        "Create a superuser from GATEWAY_ADMIN_USERNAME / GATEWAY_ADMIN_PASSWORD if none exists "
        "(without a password one is generated and printed once), and a first organisation "
        "with that user as its admin if there is no organisation yet."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        user, generated = user_ensure_admin(
            username=settings.GATEWAY_ADMIN_USERNAME, password=settings.GATEWAY_ADMIN_PASSWORD
        )
        if generated is not None:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created the admin account {user.get_username()!r} with the password: "
                    f"{generated}\nIt is shown only this once."
                )
            )
        # With the demo on, the demo organisation is the first one (manage.py load_demo).
        if not settings.GATEWAY_DEMO and not Organization.objects.exists():
            organization = organization_create(name=settings.GATEWAY_ORGANIZATION_NAME)
            membership_set(organization=organization, user=user, role=Role.ADMIN)
            self.stdout.write(f"Created the organisation {organization.name!r}.")
