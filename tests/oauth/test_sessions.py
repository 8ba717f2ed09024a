"""Authorized sessions of an endpoint: who sees them, and revoking them (page and API)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from endpoints.provider import principal_from_token
from oauth.models import OAuthAuthorization, Role
from tests.conftest import make_person
from tests.oauth.test_authorization_server import (
    authorize_params,
    code_from,
    consent,
    exchange,
    pkce,
    register,
)


def authorize(person, endpoint, *, name: str = "Test agent", seconds: int = 86400) -> dict:
    """Register a client and let ``person`` authorize it on the endpoint; its tokens."""
    client = Client()
    client_id = register(client, client_name=name)
    browser = Client()
    browser.force_login(person.user)
    proof = pkce()
    code = code_from(
        consent(browser, authorize_params(client_id, proof, endpoint.url), duration=seconds)
    )["code"]
    return exchange(client, client_id, code, proof, endpoint.url).json()


@pytest.fixture
def endpoint(org):
    from tests.factories import EndpointFactory

    return EndpointFactory(organization=org, name="Support", slug="support")


@pytest.mark.django_db
def test_admins_see_every_session_and_members_their_own(admin, member, endpoint):
    authorize(admin, endpoint, name="Claude")
    authorize(member, endpoint, name="Cursor")
    url = f"/api/mcp-endpoints/{endpoint.pk}/sessions"

    seen_by_admin = admin.api().get(url).json()["sessions"]
    oauth = {(s["clientName"], s["username"]) for s in seen_by_admin if s["kind"] == "oauth"}
    assert oauth == {("Claude", "alice"), ("Cursor", "bob")}
    tokens = {s["username"] for s in seen_by_admin if s["kind"] == "api_token"}
    assert tokens == {"alice", "bob"}

    seen_by_member = member.api().get(url).json()["sessions"]
    assert {s["username"] for s in seen_by_member} == {"bob"}
    first = seen_by_member[0]
    assert set(first) == {
        "id",
        "kind",
        "clientName",
        "userId",
        "username",
        "grantedAt",
        "expiresAt",
        "lastUsedAt",
        "calls",
    }


@pytest.mark.django_db
def test_expired_sessions_are_not_listed(admin, endpoint):
    authorize(admin, endpoint)
    OAuthAuthorization.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    sessions = admin.api().get(f"/api/mcp-endpoints/{endpoint.pk}/sessions").json()["sessions"]
    assert [s for s in sessions if s["kind"] == "oauth"] == []


@pytest.mark.django_db
def test_deleting_a_session_revokes_its_tokens(admin, member, endpoint):
    tokens = authorize(member, endpoint)
    session_id = str(OAuthAuthorization.objects.get().pk)
    response = admin.api().delete(f"/api/mcp-endpoints/{endpoint.pk}/sessions/{session_id}")
    assert response.status_code == 204
    assert principal_from_token(tokens["access_token"]) is None
    assert OAuthAuthorization.objects.get().revoked_at is not None


@pytest.mark.django_db
def test_a_member_cannot_revoke_someone_elses_session(admin, member, endpoint):
    tokens = authorize(admin, endpoint)
    session_id = str(OAuthAuthorization.objects.get().pk)
    response = member.api().delete(f"/api/mcp-endpoints/{endpoint.pk}/sessions/{session_id}")
    assert response.status_code == 404
    assert principal_from_token(tokens["access_token"]) is not None


@pytest.mark.django_db
def test_sessions_of_another_organisation_are_not_found(admin, other_admin, endpoint):
    authorize(admin, endpoint)
    session_id = str(OAuthAuthorization.objects.get().pk)
    api = other_admin.api()
    assert api.get(f"/api/mcp-endpoints/{endpoint.pk}/sessions").status_code == 404
    response = api.delete(f"/api/mcp-endpoints/{endpoint.pk}/sessions/{session_id}")
    assert response.status_code == 404


@pytest.mark.django_db
def test_a_malformed_session_id_is_a_404(admin, endpoint):
    response = admin.api().delete(f"/api/mcp-endpoints/{endpoint.pk}/sessions/not-a-uuid")
    assert response.status_code == 404
    assert response.json()["error"]


@pytest.mark.django_db
def test_revoking_an_api_token_from_the_sessions_list(admin, member, endpoint):
    sessions = admin.api().get(f"/api/mcp-endpoints/{endpoint.pk}/sessions").json()["sessions"]
    bobs = next(s for s in sessions if s["kind"] == "api_token" and s["username"] == "bob")
    response = admin.api().delete(f"/api/mcp-endpoints/{endpoint.pk}/sessions/{bobs['id']}")
    assert response.status_code == 204
    assert principal_from_token(member.token) is None


@pytest.mark.django_db
def test_the_sessions_page_lists_and_revokes(client, admin, org, endpoint):
    auditor = make_person(org, Role.MEMBER, "erin")
    authorize(auditor, endpoint, name="VS Code")
    client.force_login(admin.user)
    page = client.get(f"/endpoints/{endpoint.pk}/sessions")
    html = page.content.decode()
    assert page.status_code == 200
    assert "VS Code" in html and "erin" in html
    session_id = OAuthAuthorization.objects.get().pk
    response = client.post(f"/endpoints/{endpoint.pk}/sessions/{session_id}/revoke")
    assert response.status_code == 302
    assert OAuthAuthorization.objects.get().revoked_at is not None
    assert "VS Code" not in client.get(f"/endpoints/{endpoint.pk}/sessions").content.decode()
