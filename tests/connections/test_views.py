"""The connection pages of the admin UI, through Django's test client."""

from __future__ import annotations

import uuid

import pytest

from connections.models import Connection
from tests.factories import ConnectionFactory


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin.user)
    return client


@pytest.fixture
def member_client(client, member):
    client.force_login(member.user)
    return client


def test_pages_need_sign_in(client, db):
    response = client.get("/connections/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/connections/")


def test_the_list_shows_only_this_organisations_connections(admin_client, admin, other_org):
    ConnectionFactory(organization=admin.organization, name="Ours")
    ConnectionFactory(organization=other_org, name="Theirs")

    response = admin_client.get("/connections/")

    assert response.status_code == 200
    assert b"Ours" in response.content
    assert b"Theirs" not in response.content


def test_the_list_runs_a_constant_number_of_queries(
    admin_client, admin, django_assert_max_num_queries
):
    for _ in range(15):
        ConnectionFactory(organization=admin.organization)

    with django_assert_max_num_queries(8):
        response = admin_client.get("/connections/")
    assert response.content.count(b"status-unknown") == 15


def test_creating_stores_the_secret_encrypted_and_never_shows_it(admin_client, admin):
    response = admin_client.post(
        "/connections/new",
        {
            "name": "Orders",
            "server_url": "https://orders.example.com/mcp",
            "transport": "streamable-http",
            "auth_type": "bearer",
            "token": "sk-ui-secret",
            "headers": "X-Tenant: tenant-secret-77\n\nX-Env: prod",
        },
    )

    connection = Connection.objects.get(organization=admin.organization)
    assert response.status_code == 302
    assert response["Location"] == f"/connections/{connection.pk}"
    assert connection.token == "sk-ui-secret"
    assert connection.headers == {"X-Tenant": "tenant-secret-77", "X-Env": "prod"}
    for page in (f"/connections/{connection.pk}", f"/connections/{connection.pk}/edit"):
        html = admin_client.get(page).content
        assert b"sk-ui-secret" not in html
        assert b"tenant-secret-77" not in html


def test_validation_errors_are_shown_beside_the_fields(admin_client):
    response = admin_client.post(
        "/connections/new",
        {"name": "X", "server_url": "ftp://x", "transport": "sse", "auth_type": "bearer"},
    )

    assert response.status_code == 200
    form = response.context["form"]
    assert "http:// or https://" in form.errors["server_url"][0]
    assert "needs a token" in form.errors["token"][0]
    assert not Connection.objects.exists()


def test_a_malformed_header_line_is_explained(admin_client):
    response = admin_client.post(
        "/connections/new",
        {
            "name": "X",
            "server_url": "https://x.example.com",
            "transport": "sse",
            "auth_type": "none",
            "headers": "no colon here",
        },
    )

    assert "Line 1: write 'Name: value'." in response.context["form"].errors["headers"]


def test_editing_with_a_blank_token_keeps_the_stored_one(admin_client, admin):
    connection = ConnectionFactory(
        organization=admin.organization,
        auth_type="bearer",
        credential={"token": "keep-me", "headers": {}},
    )

    response = admin_client.post(
        f"/connections/{connection.pk}/edit",
        {
            "name": "Renamed",
            "server_url": connection.server_url,
            "transport": connection.transport,
            "auth_type": "bearer",
            "token": "",
        },
    )

    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.name == "Renamed"
    assert connection.token == "keep-me"


def test_deleting_asks_then_removes(admin_client, admin):
    connection = ConnectionFactory(organization=admin.organization)

    assert admin_client.get(f"/connections/{connection.pk}/delete").status_code == 200
    response = admin_client.post(f"/connections/{connection.pk}/delete")

    assert response.status_code == 302
    assert not Connection.objects.filter(pk=connection.pk).exists()


@pytest.mark.parametrize("suffix", ["", "/edit", "/delete"])
def test_another_organisations_connection_is_404_like_a_missing_one(
    admin_client, other_org, suffix
):
    theirs = ConnectionFactory(organization=other_org)

    assert admin_client.get(f"/connections/{theirs.pk}{suffix}").status_code == 404
    assert admin_client.get(f"/connections/{uuid.uuid4()}{suffix}").status_code == 404
    assert admin_client.get(f"/connections/not-a-uuid{suffix}").status_code == 404


def test_members_can_look_but_not_change(member_client, member):
    connection = ConnectionFactory(organization=member.organization)

    assert member_client.get("/connections/").status_code == 200
    assert member_client.get(f"/connections/{connection.pk}").status_code == 200
    for url in ("/connections/new", f"/connections/{connection.pk}/edit"):
        response = member_client.get(url)
        assert response.status_code == 403
        assert b"Only an organisation admin can do this." in response.content
    assert member_client.post(f"/connections/{connection.pk}/delete").status_code == 403
    assert Connection.objects.filter(pk=connection.pk).exists()


def test_a_user_without_an_organisation_is_told_so(client, db):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="lonely"))

    response = client.get("/")

    assert response.status_code == 403
    assert b"does not belong to any organisation" in response.content


def test_a_header_given_twice_is_explained(admin_client):
    response = admin_client.post(
        "/connections/new",
        {
            "name": "X",
            "server_url": "https://x.example.com",
            "transport": "sse",
            "auth_type": "none",
            "headers": "X-A: 1\nx-a: 2",
        },
    )

    assert "Line 2: the x-a header is given twice." in response.context["form"].errors["headers"]
