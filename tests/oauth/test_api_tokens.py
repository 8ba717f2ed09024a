"""API tokens: created in the UI and by the command, stored hashed, revocable."""

from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from oauth.models import ApiToken, Role
from tests.factories import MembershipFactory, UserFactory


def api_status(raw: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client.get("/api/mcp-connections").status_code


def test_the_page_creates_a_token_shows_it_once_and_stores_only_a_hash(client, member):
    client.force_login(member.user)

    response = client.post("/settings/api-tokens", {"name": "deploy script"}, follow=True)

    raw = response.context["new_token"]
    assert raw.startswith("gwt_")
    assert raw.encode() in response.content
    token = ApiToken.objects.get(name="deploy script")
    assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in str(ApiToken.objects.filter(pk=token.pk).values().first())
    assert raw.encode() not in client.get("/settings/api-tokens").content
    assert api_status(raw) == 200


def test_a_token_needs_a_name(client, member):
    client.force_login(member.user)

    response = client.post("/settings/api-tokens", {"name": "  "})

    assert response.status_code == 400
    assert b"Give the token a name" in response.content


def test_revoking_from_the_page_stops_the_token(client, member):
    client.force_login(member.user)
    raw = client.post("/settings/api-tokens", {"name": "ci"}, follow=True).context["new_token"]
    token = ApiToken.objects.get(name="ci")

    client.post(f"/settings/api-tokens/{token.pk}/revoke")

    assert api_status(raw) == 401
    assert b"revoked" in client.get("/settings/api-tokens").content


def test_one_cannot_revoke_someone_elses_token(client, member, admin):
    client.force_login(member.user)
    theirs = ApiToken.objects.get(user=admin.user)

    assert client.post(f"/settings/api-tokens/{theirs.pk}/revoke").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_the_command_prints_a_working_token(admin):
    out = StringIO()
    call_command("create_api_token", "alice", stdout=out)

    raw = out.getvalue().strip()
    assert api_status(raw) == 200


def test_the_command_needs_org_when_the_user_has_several(admin, other_org):
    MembershipFactory(organization=other_org, user=admin.user, role=Role.AUDITOR)

    with pytest.raises(CommandError, match="pass --org"):
        call_command("create_api_token", "alice")
    out = StringIO()
    call_command("create_api_token", "alice", "--org", "globex", stdout=out)
    token = ApiToken.objects.get(organization=other_org)
    assert token.user == admin.user
    assert api_status(out.getvalue().strip()) == 200


def test_the_command_explains_unknown_users_and_organisations(admin, db):
    UserFactory(username="nobody")
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        call_command("create_api_token", "ghost")
    with pytest.raises(CommandError, match="not a member of any organisation"):
        call_command("create_api_token", "nobody")
    with pytest.raises(CommandError, match="not a member of 'globex'"):
        call_command("create_api_token", "alice", "--org", "globex")


def test_the_page_redirects_after_creating_so_a_refresh_creates_no_second_token(client, member):
    client.force_login(member.user)

    response = client.post("/settings/api-tokens", {"name": "deploy script"})

    assert response.status_code == 302 and response["Location"] == "/settings/api-tokens"
    shown = client.get("/settings/api-tokens")
    assert shown.context["new_token"].startswith("gwt_")
    assert shown["Cache-Control"] == "no-store"
    # A refresh is a GET: no new token, and the one created is not shown again.
    again = client.get("/settings/api-tokens")
    assert again.context["new_token"] is None
    assert ApiToken.objects.filter(name="deploy script").count() == 1
