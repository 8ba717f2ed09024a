"""Provision the gateway side of a schemathesis run (``.ci/fuzz``); runs inside Django.

``.ci/fuzz`` runs it as ``manage.py shell -c "from tests.fuzz.setup import main; main()"``
with ``FUZZ_UPSTREAM_URL`` (the conformance fixture upstream's MCP URL) and
``FUZZ_TOKEN_DIR`` (where to write ``admin`` and ``member``, the raw API tokens, mode
0600) in the environment, and reads one JSON line from stdout.

The organisation, its connection (health-checked, so its catalog exists), its endpoint
and the admin's token come from the conformance run's provisioning, imported rather
than copied; a member of the same organisation with a token of its own is added, so
the API is fuzzed with both roles' permissions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from django.contrib.auth import get_user_model

from oauth.models import Organization, Role
from oauth.services import api_token_create, membership_set
from tests.conformance.setup import ORGANIZATION_SLUG, provision

MEMBER_USERNAME = "fuzz-member"


def main() -> None:
    """Entry point of ``manage.py shell -c``; prints one JSON line."""
    get_user_model().objects.filter(username=MEMBER_USERNAME).delete()
    summary, admin_token = provision(upstream_url=os.environ["FUZZ_UPSTREAM_URL"])
    organization = Organization.objects.get(slug=ORGANIZATION_SLUG)
    member = get_user_model().objects.create(username=MEMBER_USERNAME)
    member.set_unusable_password()
    member.save(update_fields=["password"])
    membership_set(organization=organization, user=member, role=Role.MEMBER)
    _, member_token = api_token_create(organization=organization, user=member, name="fuzz member")
    folder = Path(os.environ["FUZZ_TOKEN_DIR"])
    for name, raw in (("admin", admin_token), ("member", member_token)):
        path = folder / name
        path.touch(mode=0o600)
        path.write_text(raw)
    print(json.dumps({**summary, "roles": ["admin", "member"]}))
