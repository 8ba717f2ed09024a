"""The credential fields of /api/mcp-connections, who holds a credential
(/credentials, admins only) and the caller's own (/credentials/me)."""

from __future__ import annotations

import json

import pytest

from audit.models import ManagementEvent
from connections import credentials
from connections.models import Connection, UpstreamCredential
from connections.services import connection_create
from tests.factories import ConnectionFactory

URL = "/api/mcp-connections"
TOKEN = "bob-personal-token-0002"


@pytest.fixture
def personal(org) -> Connection:
    return connection_create(
        organization=org,
        name="Tickets",
        server_url="https://tickets.example.com/mcp",
        auth_type="bearer",
        credential_mode="personal",
    )


def test_an_admin_creates_a_personal_oauth_connection_with_a_client_of_their_own(admin):
    response = admin.api().post(
        URL,
        {
            "name": "Signed",
            "serverUrl": "https://signed.example.com/mcp",
            "authType": "oauth",
            "credentialMode": "personal",
            "oauthClientId": "gateway-client",
            "oauthClientSecret": "client-secret-value-42",
            "oauthScopes": "read  write",
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["authType"] == "oauth"
    assert body["credentialMode"] == "personal"
    assert body["oauthClientId"] == "gateway-client"
    assert body["oauthClientSecretSet"] is True
    assert body["oauthRegistration"] == "manual"
    assert body["oauthScopes"] == "read write"
    assert body["sharedCredentialState"] is None
    assert "client-secret-value-42" not in response.content.decode()
    stored = Connection.objects.get(pk=body["id"])
    assert stored.oauth_client_secret == "client-secret-value-42"

    # Changing the id alone keeps no secret from another client; clearing it clears both.
    patched = admin.api().patch(f"{URL}/{body['id']}", {"oauthClientId": ""}, format="json")
    assert patched.json()["oauthClientId"] is None
    assert patched.json()["oauthClientSecretSet"] is False


def test_a_shared_oauth_connection_shows_whether_it_is_signed_in(admin):
    response = admin.api().post(
        URL,
        {"name": "Signed", "serverUrl": "https://signed.example.com/mcp", "authType": "oauth"},
        format="json",
    )

    assert response.json()["sharedCredentialState"] == "missing"
    assert response.json()["credentialMode"] == "shared"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"credentialMode": "personal"}, "credentialMode"),
        ({"credentialMode": "everyone"}, "credentialMode"),
        ({"authType": "bearer", "credentialMode": "personal", "token": "tok-123456"}, "token"),
        ({"oauthClientId": "abc"}, "oauthClientId"),
        ({"authType": "oauth", "oauthClientSecret": "s3cret"}, "oauthClientSecret"),
        ({"authType": "oauth", "oauthScopes": 'bad"scope'}, "oauthScopes"),
        ({"authType": "oauth", "token": "tok-123456"}, "token"),
    ],
)
def test_invalid_credential_settings_answer_400_naming_the_field(admin, fields, field):
    body = {"name": "X", "serverUrl": "https://x.example.com/mcp", **fields}

    response = admin.api().post(URL, body, format="json")

    assert response.status_code == 400
    assert field in response.json()["details"], response.json()


def test_admins_see_who_holds_a_credential_never_the_secret(personal, admin, member):
    credentials.personal_token_set(connection=personal, user=member.user, token=TOKEN)

    response = admin.api().get(f"{URL}/{personal.pk}/credentials")

    assert response.status_code == 200
    [row] = response.json()["credentials"]
    assert row["userId"] == member.user.pk
    assert row["username"] == "bob"
    assert row["kind"] == "token"
    assert row["state"] == "valid"
    assert set(row) == {
        "id",
        "userId",
        "username",
        "kind",
        "state",
        "stateReason",
        "expiresAt",
        "refreshedAt",
        "createdAt",
        "updatedAt",
    }
    assert TOKEN not in response.content.decode()


def test_members_may_not_list_credentials_and_other_tenants_get_404(personal, member, other_admin):
    assert member.api().get(f"{URL}/{personal.pk}/credentials").status_code == 403
    response = other_admin.api().get(f"{URL}/{personal.pk}/credentials")
    assert response.status_code == 404
    assert response.json() == {"error": "MCP connection not found"}
    assert other_admin.api().get(f"{URL}/not-a-uuid/credentials").status_code == 404


def test_a_member_sets_reads_and_deletes_their_own_token(personal, member):
    me = f"{URL}/{personal.pk}/credentials/me"

    assert member.api().get(me).json()["state"] == "missing"

    response = member.api().put(me, {"token": TOKEN}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["state"] == "valid"
    assert body["kind"] == "token"
    assert body["connectUrl"].endswith("/me/connections")
    assert TOKEN not in response.content.decode()
    assert UpstreamCredential.objects.get(user=member.user).bearer == TOKEN
    assert ManagementEvent.objects.filter(details__change="personal_token_set").exists()

    assert member.api().delete(me).status_code == 204
    assert member.api().delete(me).json() == {"error": "You have no credential for this server."}
    assert not UpstreamCredential.objects.exists()


def test_bad_token_bodies_answer_400(personal, member, org):
    me = f"{URL}/{personal.pk}/credentials/me"
    shared = ConnectionFactory(organization=org)

    assert member.api().put(me, {"token": "two words"}, format="json").status_code == 400
    assert member.api().put(me, {"tokn": TOKEN}, format="json").status_code == 400
    assert member.api().put(me, [TOKEN], format="json").status_code == 400
    response = member.api().put(
        me, data=json.dumps({"token": TOKEN}) + "x", content_type="application/json"
    )
    assert response.status_code == 400
    refused = member.api().put(f"{URL}/{shared.pk}/credentials/me", {"token": TOKEN}, format="json")
    assert refused.status_code == 400
    assert "shared credential" in refused.json()["error"] + str(refused.json()["details"])
    assert member.api().get(f"{URL}/{shared.pk}/credentials/me").json()["state"] is None


def test_another_tenants_connection_is_404_for_my_credential(personal, other_admin):
    me = f"{URL}/{personal.pk}/credentials/me"

    assert other_admin.api().put(me, {"token": TOKEN}, format="json").status_code == 404
    assert other_admin.api().get(me).status_code == 404
