"""Sign-in, the organisation switcher and tenancy of the session."""

from __future__ import annotations

from oauth.models import Role
from tests.factories import PASSWORD, ConnectionFactory, MembershipFactory


def test_sign_in_and_out(client, admin):
    page = client.get("/accounts/login/")
    assert page.status_code == 200

    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/").status_code == 200

    client.post("/accounts/logout/")
    assert client.get("/").status_code == 302


def test_a_wrong_password_is_refused_with_a_message(client, admin):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})

    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_a_user_in_two_organisations_switches_between_them(client, admin, other_org):
    MembershipFactory(organization=other_org, user=admin.user, role=Role.MEMBER)
    ConnectionFactory(organization=admin.organization, name="Acme server")
    ConnectionFactory(organization=other_org, name="Globex server")
    client.force_login(admin.user)

    first = client.get("/connections/")
    assert b"Acme server" in first.content and b"Globex server" not in first.content
    assert b'id="org-select"' in first.content

    response = client.post(
        "/organizations/switch", {"organization": str(other_org.pk), "next": "/connections/"}
    )
    assert response.status_code == 302 and response["Location"] == "/connections/"
    second = client.get("/connections/")
    assert b"Globex server" in second.content and b"Acme server" not in second.content
    # The role follows the organisation: a member there cannot add connections.
    assert client.get("/connections/new").status_code == 403


def test_switching_to_an_organisation_one_is_not_in_is_404(client, admin, other_org):
    client.force_login(admin.user)

    response = client.post("/organizations/switch", {"organization": str(other_org.pk)})

    assert response.status_code == 404


def test_switching_refuses_an_offsite_next_url(client, admin):
    client.force_login(admin.user)

    response = client.post(
        "/organizations/switch",
        {"organization": str(admin.organization.pk), "next": "https://evil.example.com/"},
    )

    assert response["Location"] == "/"
