"""``manage.py create_api_token USERNAME [--org SLUG] [--name NAME]``: print a new API token."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from oauth.selectors import membership_list_for_user
from oauth.services import api_token_create


class Command(BaseCommand):
    help = "Create an API token for a user in one of their organisations and print it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--org", help="Organisation slug (needed if the user has several).")
        parser.add_argument("--name", default="created from the command line")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: options["username"]})
        except User.DoesNotExist:
            raise CommandError(f"No user named {options['username']!r}.") from None
        memberships = membership_list_for_user(user=user)
        if options["org"]:
            memberships = memberships.filter(organization__slug=options["org"])
        found = list(memberships[:2])
        if not found:
            where = f" {options['org']!r}" if options["org"] else " any organisation"
            raise CommandError(f"{user.get_username()} is not a member of{where}.")
        if len(found) > 1:
            slugs = ", ".join(m.organization.slug for m in membership_list_for_user(user=user))
            raise CommandError(
                f"{user.get_username()} belongs to several organisations; pass --org ({slugs})."
            )
        try:
            _, raw = api_token_create(
                organization=found[0].organization, user=user, name=options["name"]
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(raw)
