"""The /api/mcp-connections REST API: shapes, tenancy, roles and every error path."""

from __future__ import annotations

import json
import uuid

import pytest
from rest_framework.test import APIClient

from connections.models import Connection
from tests.factories import ConnectionFactory

URL = "/api/mcp-connections"

CONNECTION_FIELDS = {
    "id",
    "tenantId",
    "name",
    "serverUrl",
    "transport",
    "authType",
    "status",
    "instructions",
    "lastHealthCheckAt",
    "createdAt",
    "updatedAt",
    "tokenSet",
    "headersSet",
    "serverName",
    "serverVersion",
    "protocolVersion",
    "serverInstructions",
    "lastCheckError",
    "lastCheckLatencyMs",
    "slug",
    "command",
    "args",
    "envSet",
    "envNames",
    "credentialMode",
    "oauthClientId",
    "oauthClientSecretSet",
    "oauthRegistration",
    "oauthScopes",
    "sharedCredentialState",
}


def detail(connection_id) -> str:
    return f"{URL}/{connection_id}"


def create(person, **fields):
    body = {"name": "Orders", "serverUrl": "https://orders.example.com/mcp", **fields}
    return person.api().post(URL, body, format="json")


# --- shapes -----------------------------------------------------------------------


def test_it_lists_the_organisations_connections_in_the_reference_shape(admin, other_org):
    mine = ConnectionFactory(organization=admin.organization, name="Orders")
    ConnectionFactory(organization=other_org, name="Theirs")

    response = admin.api().get(URL)

    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["connections"]
    assert [c["id"] for c in body["connections"]] == [str(mine.pk)]
    item = body["connections"][0]
    assert set(item) == CONNECTION_FIELDS
    assert item["tenantId"] == str(admin.organization.pk)
    assert item["status"] == "unknown"
    assert item["lastHealthCheckAt"] is None
    assert item["instructions"] is None


def test_it_creates_a_connection_and_answers_201_with_the_object(admin):
    response = create(
        admin,
        transport="sse",
        authType="bearer",
        token="sk-live-123",
        headers={"X-Tenant": "acme"},
        instructions="Use for orders.",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == CONNECTION_FIELDS
    assert body["name"] == "Orders"
    assert body["serverUrl"] == "https://orders.example.com/mcp"
    assert body["transport"] == "sse"
    assert body["authType"] == "bearer"
    assert body["status"] == "unknown"
    assert body["tokenSet"] is True
    assert body["headersSet"] is True
    assert body["instructions"] == "Use for orders."
    assert "token" not in body and "headers" not in body
    stored = Connection.objects.get(pk=body["id"])
    assert stored.organization == admin.organization
    assert stored.token == "sk-live-123"
    assert stored.headers == {"X-Tenant": "acme"}


def test_the_secret_is_never_echoed_in_any_response(admin):
    created = create(admin, authType="bearer", token="sk-never-shown", headers={"X-K": "hv-9"})
    connection_id = created.json()["id"]
    responses = [
        created,
        admin.api().get(URL),
        admin.api().get(detail(connection_id)),
        admin.api().patch(detail(connection_id), {"name": "Renamed"}, format="json"),
    ]
    for response in responses:
        assert b"sk-never-shown" not in response.content
        assert b"hv-9" not in response.content


def test_it_returns_one_connection(member):
    connection = ConnectionFactory(organization=member.organization)

    response = member.api().get(detail(connection.pk))

    assert response.status_code == 200
    assert response.json()["id"] == str(connection.pk)
    assert set(response.json()) == CONNECTION_FIELDS


def test_patch_changes_only_the_given_fields(admin):
    connection_id = create(admin, authType="bearer", token="tok-1").json()["id"]

    response = admin.api().patch(
        detail(connection_id), {"name": "Orders v2", "instructions": None}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Orders v2"
    assert body["serverUrl"] == "https://orders.example.com/mcp"
    assert body["authType"] == "bearer"
    assert body["tokenSet"] is True
    assert Connection.objects.get(pk=connection_id).token == "tok-1"


def test_patch_replaces_the_token_and_switching_to_none_drops_it(admin):
    connection_id = create(admin, authType="bearer", token="tok-1").json()["id"]

    admin.api().patch(detail(connection_id), {"token": "tok-2"}, format="json")
    assert Connection.objects.get(pk=connection_id).token == "tok-2"

    response = admin.api().patch(detail(connection_id), {"authType": "none"}, format="json")
    assert response.status_code == 200
    assert response.json()["tokenSet"] is False
    assert Connection.objects.get(pk=connection_id).token is None


def test_delete_removes_the_connection(admin):
    connection = ConnectionFactory(organization=admin.organization)

    response = admin.api().delete(detail(connection.pk))

    assert response.status_code == 204
    assert not Connection.objects.filter(pk=connection.pk).exists()
    assert admin.api().get(detail(connection.pk)).status_code == 404


# --- not found and tenancy ---------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_another_tenants_connection_answers_404_like_a_missing_one(admin, other_org, method):
    theirs = ConnectionFactory(organization=other_org)
    body = {"name": "stolen"} if method == "patch" else None

    response = getattr(admin.api(), method)(detail(theirs.pk), body, format="json")
    missing = getattr(admin.api(), method)(detail(uuid.uuid4()), body, format="json")

    assert response.status_code == missing.status_code == 404
    assert response.json() == missing.json() == {"error": "MCP connection not found"}
    theirs.refresh_from_db()
    assert theirs.name != "stolen"


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"])
def test_a_malformed_id_answers_404(admin, bad_id):
    response = admin.api().get(detail(bad_id))

    assert response.status_code == 404
    assert response.json() == {"error": "MCP connection not found"}


def test_an_unknown_api_route_answers_404_in_the_error_shape(admin):
    response = admin.api().get("/api/nothing-here")

    assert response.status_code == 404
    assert "error" in response.json()


# --- authentication and roles ------------------------------------------------------


def test_it_answers_401_without_credentials(db):
    response = APIClient().get(URL)

    assert response.status_code == 401
    assert response.json() == {"error": "Authentication credentials were not provided."}
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer gwt_not-a-real-token", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"],
)
def test_it_answers_401_for_a_bad_authorization_header(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get(URL)

    assert response.status_code == 401
    assert response.json()["error"]


def test_a_revoked_token_stops_working(admin):
    from oauth.models import ApiToken
    from oauth.services import api_token_revoke

    assert admin.api().get(URL).status_code == 200
    api_token_revoke(token=ApiToken.objects.get(user=admin.user))

    response = admin.api().get(URL)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]


def test_a_token_of_a_user_removed_from_the_organisation_answers_403(admin):
    admin.membership.delete()

    response = admin.api().get(URL)

    assert response.status_code == 403
    assert response.json()["error"]


@pytest.mark.parametrize("who", ["member", "auditor"])
def test_only_admins_may_write(request, who, admin):
    person = request.getfixturevalue(who)
    connection = ConnectionFactory(organization=admin.organization)

    responses = [
        create(person),
        person.api().patch(detail(connection.pk), {"name": "x"}, format="json"),
        person.api().delete(detail(connection.pk)),
    ]

    for response in responses:
        assert response.status_code == 403
        assert response.json() == {"error": "Only an organisation admin can change this."}
    assert person.api().get(URL).status_code == 200
    connection.refresh_from_db()
    assert connection.name != "x"


def test_the_browser_session_works_and_needs_csrf_for_writes(admin):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(admin.user)

    assert client.get(URL).status_code == 200
    response = client.post(URL, {"name": "x", "serverUrl": "https://x.example.com"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]


def test_token_use_is_recorded(admin):
    from oauth.models import ApiToken

    admin.api().get(URL)

    assert ApiToken.objects.get(user=admin.user).last_used_at is not None


# --- validation and malformed requests ---------------------------------------------


def test_malformed_json_answers_400(admin):
    response = admin.api().post(URL, data="{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"].startswith("The request body is not valid JSON")


def test_a_json_body_that_is_not_an_object_answers_400(admin):
    response = admin.api().post(URL, data=json.dumps([1, 2]), content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"error": "The request body must be a JSON object."}


def test_a_non_json_body_answers_415(admin):
    response = admin.api().post(
        URL, data="name=x", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


def test_an_unsupported_method_answers_405(admin):
    response = admin.api().put(URL, {}, format="json")

    assert response.status_code == 405
    assert response.json() == {"error": "Method PUT is not allowed here."}


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"serverUrl": "ftp://files.example.com"}, "serverUrl", "http:// or https://"),
        ({"serverUrl": "not a url"}, "serverUrl", ""),
        ({"serverUrl": "https://user:pw@example.com/mcp"}, "serverUrl", "not in the URL"),
        ({"authType": "bearer"}, "token", "needs a token"),
        ({"authType": "bearer", "token": "   "}, "token", "needs a token"),
        ({"authType": "kerberos"}, "authType", ""),
        ({"transport": "carrier-pigeon"}, "transport", ""),
        ({"name": ""}, "name", ""),
        ({"headers": {"Authorization": "Bearer x"}}, "headers", "token field"),
        ({"headers": {"bad header": "x"}}, "headers", "not a valid header name"),
        ({"headers": {"X-A": "line\nbreak"}}, "headers", "one line"),
        ({"headers": "X-A: 1"}, "headers", ""),
        ({"surprise": 1}, "surprise", "Unknown field"),
    ],
)
def test_invalid_input_answers_400_with_a_message_per_field(admin, fields, field, message):
    response = create(admin, **fields)

    assert response.status_code == 400
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert field in body["details"], body
    assert message in " ".join(body["details"][field])
    assert not Connection.objects.exists()


def test_names_are_unique_per_organisation_ignoring_case(admin, other_admin):
    assert create(admin, name="Orders").status_code == 201

    duplicate = create(admin, name="orders")
    assert duplicate.status_code == 400
    assert "already exists" in duplicate.json()["details"]["name"][0]
    assert create(other_admin, name="Orders").status_code == 201


def test_patch_to_bearer_without_a_token_answers_400(admin):
    connection_id = create(admin).json()["id"]

    response = admin.api().patch(detail(connection_id), {"authType": "bearer"}, format="json")

    assert response.status_code == 400
    assert "token" in response.json()["details"]


def test_too_many_requests_answer_429(admin, settings):
    from rest_framework.settings import api_settings
    from rest_framework.throttling import UserRateThrottle

    original = UserRateThrottle.THROTTLE_RATES
    UserRateThrottle.THROTTLE_RATES = {**api_settings.DEFAULT_THROTTLE_RATES, "user": "3/minute"}
    try:
        statuses = [admin.api().get(URL).status_code for _ in range(4)]
    finally:
        UserRateThrottle.THROTTLE_RATES = original

    assert statuses == [200, 200, 200, 429]


def test_an_unexpected_error_answers_500_in_the_error_shape(admin, monkeypatch):
    from connections import selectors

    def boom(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(selectors, "connection_list", boom)
    client = admin.api()
    client.raise_request_exception = False

    response = client.get(URL)

    assert response.status_code == 500
    assert response.json() == {
        "error": "Something went wrong on the gateway; the error has been logged."
    }
    assert b"database on fire" not in response.content


# --- schema ------------------------------------------------------------------------


def test_the_openapi_schema_describes_the_connections_api(admin):
    response = admin.api().get("/api/schema", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/mcp-connections" in schema["paths"]
    assert "/api/mcp-connections/{connection_id}" in schema["paths"]
    create_body = schema["components"]["schemas"]["ConnectionInRequest"]["properties"]
    assert {"token", "headers", "serverUrl", "authType"} <= set(create_body)


def test_the_interactive_docs_page_renders(admin):
    response = admin.api().get("/api/docs")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def test_a_token_with_auth_type_none_is_refused_rather_than_dropped(admin):
    response = create(admin, authType="none", token="typed-by-mistake")

    assert response.status_code == 400
    assert "only used with bearer" in response.json()["details"]["token"][0]


def test_a_lost_race_on_the_name_answers_400_not_500(admin, monkeypatch):
    from connections import services

    create(admin, name="Orders")
    monkeypatch.setattr(services, "_check_name_free", lambda **kwargs: None)

    response = create(admin, name="ORDERS")

    assert response.status_code == 400
    assert "already exists" in response.json()["details"]["name"][0]


def test_creating_queues_a_check_and_a_broker_outage_does_not_fail_the_request(
    admin, monkeypatch, django_capture_on_commit_callbacks
):
    from connections import tasks

    queued: list[str] = []
    monkeypatch.setattr(tasks.connection_check, "delay", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        response = create(admin, name="Queued")
    assert response.status_code == 201
    assert queued == [response.json()["id"]]

    def broker_down(connection_id):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.connection_check, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = create(admin, name="Still saved")
    assert response.status_code == 201
    assert Connection.objects.filter(name="Still saved").exists()


def test_it_derives_a_free_slug_from_the_name_and_keeps_it_when_renamed(admin):
    first = create(admin, name="Acme Orders").json()
    assert first["slug"] == "acme-orders"
    ConnectionFactory(organization=admin.organization, name="Other", slug="billing")
    clash = create(admin, name="Billing", serverUrl="https://billing.example.com/mcp").json()
    assert clash["slug"] == "billing-2"
    renamed = admin.api().patch(detail(first["id"]), {"name": "Orders v2"}, format="json")
    assert renamed.json()["slug"] == "acme-orders"


def test_it_refuses_a_malformed_or_taken_slug(admin):
    ConnectionFactory(organization=admin.organization, name="Other", slug="orders")
    bad = create(admin, slug="Not A Slug")
    assert bad.status_code == 400
    assert "slug" in bad.json()["details"]
    taken = create(admin, slug="orders")
    assert taken.status_code == 400
    assert "already uses" in taken.json()["details"]["slug"][0]
