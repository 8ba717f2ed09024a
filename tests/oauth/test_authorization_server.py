"""The gateway as an OAuth authorization server: discovery, registration, consent, tokens.

Driven through Django's test client (the live flow with a real MCP client and
browser is in tests/transport/test_oauth_flow.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from audit.models import ManagementEvent
from endpoints.models import EndpointAccess
from endpoints.provider import principal_from_token
from endpoints.services import endpoint_entries_set_enabled, endpoint_update
from oauth.models import AccessDuration, OAuthApplication, OAuthAuthorization, OAuthGrant, Role
from oauth.services import oauth_authorization_revoke, oauth_clients_unused_delete
from tests.conftest import make_person
from tests.endpoints.conftest import entry, store, tool
from tests.factories import ConnectionFactory, EndpointFactory

REDIRECT = "http://127.0.0.1:3030/callback"


@pytest.fixture
def endpoint(org):
    return EndpointFactory(organization=org, name="Support", slug="support")


@pytest.fixture
def other_endpoint(org):
    return EndpointFactory(organization=org, name="Finance", slug="finance")


def _json(response) -> dict:
    return json.loads(response.content)


def register(client: Client, **metadata) -> str:
    body = {
        "client_name": "Test agent",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        **metadata,
    }
    response = client.post("/o/register/", json.dumps(body), content_type="application/json")
    assert response.status_code == 201, response.content
    return _json(response)["client_id"]


@dataclass
class Pkce:
    verifier: str
    challenge: str


def pkce() -> Pkce:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return Pkce(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def authorize_params(client_id: str, proof: Pkce, resource: str | None, **extra) -> dict:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "mcp",
        "state": "st-123",
        "code_challenge": proof.challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    if resource is not None:
        params["resource"] = resource
    return {k: v for k, v in params.items() if v is not None}


def consent(browser: Client, params: dict, *, duration: int, allow: bool = True):
    page = browser.get("/o/authorize/", params)
    assert page.status_code == 200, page.content
    html = page.content.decode()
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))
    form = {k: v.replace("&amp;", "&") for k, v in form.items()}
    form["duration"] = str(duration)
    if allow:
        form["allow"] = "Authorize"
    return browser.post("/o/authorize/", form)


def code_from(response) -> dict[str, str]:
    assert response.status_code == 302, response.content
    query = parse_qs(urlsplit(response["Location"]).query)
    return {k: v[0] for k, v in query.items()}


def exchange(client: Client, client_id: str, code: str, proof: Pkce, resource: str | None):
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": client_id,
        "code_verifier": proof.verifier,
    }
    if resource:
        data["resource"] = resource
    return client.post("/o/token/", data)


def refresh(client: Client, client_id: str, refresh_token: str):
    return client.post(
        "/o/token/",
        {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id},
    )


@pytest.fixture
def authorized(admin, endpoint):
    """A client authorized by alice on the endpoint for 7 days, with its tokens."""
    client = Client()
    client_id = register(client)
    browser = Client()
    browser.force_login(admin.user)
    proof = pkce()
    result = code_from(
        consent(browser, authorize_params(client_id, proof, endpoint.url), duration=7 * 86400)
    )
    tokens = _json(exchange(client, client_id, result["code"], proof, endpoint.url))
    return client, client_id, tokens


# --- discovery -------------------------------------------------------------------------


@pytest.mark.django_db
def test_authorization_server_metadata_has_one_issuer_everywhere(client, endpoint):
    documents = [
        client.get(path)
        for path in (
            "/.well-known/oauth-authorization-server",
            "/.well-known/oauth-authorization-server/mcp/support",
            "/.well-known/openid-configuration",
            "/.well-known/openid-configuration/mcp/support",
            "/mcp/support/.well-known/openid-configuration",
        )
    ]
    assert {response.status_code for response in documents} == {200}
    issuers = {_json(response)["issuer"] for response in documents}
    assert issuers == {settings.GATEWAY_PUBLIC_URL}
    data = _json(documents[0])
    assert data["code_challenge_methods_supported"] == ["S256"]
    assert data["authorization_response_iss_parameter_supported"] is True
    assert data["client_id_metadata_document_supported"] is True
    assert "none" in data["token_endpoint_auth_methods_supported"]
    assert data["registration_endpoint"] == f"{settings.GATEWAY_PUBLIC_URL}/o/register/"
    assert data["authorization_endpoint"] == f"{settings.GATEWAY_PUBLIC_URL}/o/authorize/"
    assert set(data["grant_types_supported"]) == {"authorization_code", "refresh_token"}


@pytest.mark.django_db
def test_protected_resource_metadata_names_the_exact_endpoint_url(client, endpoint):
    response = client.get("/.well-known/oauth-protected-resource/mcp/support")
    assert response.status_code == 200
    assert _json(response) == {
        "resource": f"{settings.GATEWAY_PUBLIC_URL}/mcp/support",
        "authorization_servers": [settings.GATEWAY_PUBLIC_URL],
        "scopes_supported": ["mcp"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Support",
    }
    assert response["Access-Control-Allow-Origin"] == "*"


@pytest.mark.django_db
def test_protected_resource_metadata_of_an_unknown_endpoint_is_404(client):
    response = client.get("/.well-known/oauth-protected-resource/mcp/nope")
    assert response.status_code == 404
    assert _json(response)["error"] == "not_found"


@pytest.mark.django_db
def test_protected_resource_metadata_on_the_endpoint_domain(client, endpoint, settings):
    settings.GATEWAY_ENDPOINT_DOMAIN = "mcp.example.com"
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, ".mcp.example.com"]
    response = client.get(
        "/.well-known/oauth-protected-resource/mcp", HTTP_HOST="support.mcp.example.com"
    )
    assert response.status_code == 200
    assert _json(response)["resource"] == "https://support.mcp.example.com/mcp"


@pytest.mark.django_db
def test_browser_clients_get_cors_on_discovery_registration_and_token(client, endpoint):
    for path in ("/.well-known/oauth-authorization-server", "/o/register/", "/o/token/"):
        response = client.options(
            path,
            HTTP_ORIGIN="http://localhost:6274",
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
            HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type",
        )
        assert response["Access-Control-Allow-Origin"] == "*", path


# --- registration ------------------------------------------------------------------------


@pytest.mark.django_db
def test_dynamic_registration_creates_a_public_client(client):
    client_id = register(client)
    application = OAuthApplication.objects.get(client_id=client_id)
    assert application.client_type == "public"
    assert application.name == "Test agent"
    assert application.registration_source == "dcr"


@pytest.mark.django_db
def test_registration_refuses_other_grant_types(client):
    response = client.post(
        "/o/register/",
        json.dumps({"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert _json(response)["error"] == "invalid_client_metadata"


@pytest.mark.django_db
def test_registration_is_rate_limited_per_address(client, settings):
    settings.GATEWAY_OAUTH_REGISTRATIONS_PER_HOUR = 3
    for _ in range(3):
        register(client)
    response = client.post(
        "/o/register/",
        json.dumps({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}),
        content_type="application/json",
    )
    assert response.status_code == 429
    assert response["Retry-After"] == "3600"
    assert "registrations per hour" in _json(response)["error_description"]


@pytest.mark.django_db
def test_unused_registrations_are_deleted_and_used_ones_kept(authorized, client):
    _, used_id, _ = authorized
    unused_id = register(client)
    OAuthApplication.objects.update(created=timezone.now() - timedelta(days=30))
    assert oauth_clients_unused_delete(older_than=timedelta(days=7)) == 1
    remaining = set(OAuthApplication.objects.values_list("client_id", flat=True))
    assert used_id in remaining
    assert unused_id not in remaining


# --- consent --------------------------------------------------------------------------


@pytest.mark.django_db
def test_authorize_sends_a_signed_out_user_to_sign_in(client, endpoint):
    client_id = register(client)
    response = client.get("/o/authorize/", authorize_params(client_id, pkce(), endpoint.url))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.django_db
def test_consent_page_shows_client_endpoint_tools_and_capped_durations(
    client, admin, endpoint, served_tools
):
    endpoint.max_access_seconds = AccessDuration.MONTH
    endpoint.save()
    client_id = register(client)
    client.force_login(admin.user)
    page = client.get("/o/authorize/", authorize_params(client_id, pkce(), endpoint.url))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Test agent" in html
    assert "127.0.0.1:3030" in html
    assert "Support" in html
    for name in served_tools:
        assert name in html
    assert [int(v) for v in re.findall(r'name="duration" value="(\d+)"', html)] == [
        3600,
        86400,
        7 * 86400,
        30 * 86400,
    ]


@pytest.fixture
def served_tools(endpoint):
    connection = ConnectionFactory(organization=endpoint.organization, name="Orders")
    endpoint_update(endpoint=endpoint, connection_ids=[connection.pk])
    store(connection, tools=[tool("lookup_order", "Find an order.", order_id="string")])
    found = entry(connection, "lookup_order")
    endpoint_entries_set_enabled(endpoint=endpoint, entry_ids=[found.pk], enabled=True)
    return [f"{connection.slug}__lookup_order"]


@pytest.mark.django_db
def test_the_chosen_duration_bounds_the_authorization(authorized, endpoint):
    _, _, tokens = authorized
    authorization = OAuthAuthorization.objects.get()
    lasts = authorization.expires_at - authorization.granted_at
    assert timedelta(days=7) - timedelta(seconds=5) < lasts <= timedelta(days=7)
    assert authorization.endpoint == endpoint
    assert authorization.resource == endpoint.url
    assert tokens["token_type"] == "Bearer"
    assert 0 < tokens["expires_in"] <= settings.GATEWAY_OAUTH_ACCESS_TOKEN_SECONDS
    assert tokens["refresh_token"]


@pytest.mark.django_db
def test_access_token_acts_for_the_user_only_on_its_endpoint(authorized, admin, endpoint):
    _, _, tokens = authorized
    principal = principal_from_token(tokens["access_token"])
    assert principal is not None
    assert principal.user_id == admin.user.pk
    assert principal.token_kind == "oauth"
    assert principal.client_name == "Test agent"
    assert principal.resource == endpoint.url


@pytest.mark.django_db
def test_authorize_redirects_with_the_iss_parameter(client, admin, endpoint):
    client_id = register(client)
    client.force_login(admin.user)
    result = code_from(
        consent(client, authorize_params(client_id, pkce(), endpoint.url), duration=3600)
    )
    assert result["iss"] == settings.GATEWAY_PUBLIC_URL
    assert result["state"] == "st-123"
    assert result["code"]


@pytest.mark.django_db
def test_deny_returns_access_denied_to_the_client(client, admin, endpoint):
    client_id = register(client)
    client.force_login(admin.user)
    result = code_from(
        consent(
            client, authorize_params(client_id, pkce(), endpoint.url), duration=3600, allow=False
        )
    )
    assert result["error"] == "access_denied"
    assert OAuthAuthorization.objects.count() == 0


@pytest.mark.django_db
def test_a_duration_longer_than_the_endpoint_allows_is_refused(client, admin, endpoint):
    endpoint.max_access_seconds = AccessDuration.DAY
    endpoint.save()
    client_id = register(client)
    client.force_login(admin.user)
    response = consent(
        client, authorize_params(client_id, pkce(), endpoint.url), duration=30 * 86400
    )
    assert response.status_code == 400
    assert "longer than this endpoint allows" in response.content.decode()


@pytest.mark.django_db
def test_a_member_not_allowed_on_the_endpoint_is_refused_at_consent(client, org, endpoint):
    endpoint.access = EndpointAccess.MEMBERS
    endpoint.save()
    outsider = make_person(org, Role.MEMBER, "dave")
    client_id = register(client)
    client.force_login(outsider.user)
    response = client.get("/o/authorize/", authorize_params(client_id, pkce(), endpoint.url))
    assert response.status_code == 403
    html = response.content.decode()
    assert "You cannot use" in html
    assert "error=access_denied" in html


@pytest.mark.django_db
def test_a_user_of_another_organisation_is_refused_at_consent(client, other_admin, endpoint):
    client_id = register(client)
    client.force_login(other_admin.user)
    response = client.get("/o/authorize/", authorize_params(client_id, pkce(), endpoint.url))
    assert response.status_code == 403


# --- refusals with the right OAuth error -------------------------------------------------


@pytest.mark.django_db
def test_a_wrong_redirect_uri_is_shown_not_followed(client, admin, endpoint):
    client_id = register(client)
    client.force_login(admin.user)
    params = authorize_params(client_id, pkce(), endpoint.url, redirect_uri="https://evil.test/cb")
    response = client.get("/o/authorize/", params)
    assert response.status_code == 400
    assert "cannot be used" in response.content.decode()


@pytest.mark.django_db
def test_loopback_redirects_may_use_any_port(client, admin, endpoint):
    client_id = register(client)
    client.force_login(admin.user)
    params = authorize_params(
        client_id, pkce(), endpoint.url, redirect_uri="http://127.0.0.1:49152/callback"
    )
    assert client.get("/o/authorize/", params).status_code == 200


@pytest.mark.django_db
def test_missing_pkce_is_refused(client, admin, endpoint):
    client_id = register(client)
    client.force_login(admin.user)
    params = authorize_params(
        client_id, pkce(), endpoint.url, code_challenge=None, code_challenge_method=None
    )
    result = code_from(client.get("/o/authorize/", params))
    assert result["error"] == "invalid_request"
    assert result["state"] == "st-123"


@pytest.mark.django_db
def test_plain_pkce_is_refused(client, admin, endpoint):
    client_id = register(client)
    client.force_login(admin.user)
    params = authorize_params(client_id, pkce(), endpoint.url, code_challenge_method="plain")
    result = code_from(client.get("/o/authorize/", params))
    assert result["error"] == "invalid_request"
    assert "S256" in result["error_description"]


@pytest.mark.django_db
def test_missing_resource_is_refused(client, admin, endpoint):
    client_id = register(client)
    client.force_login(admin.user)
    result = code_from(client.get("/o/authorize/", authorize_params(client_id, pkce(), None)))
    assert result["error"] == "invalid_target"


@pytest.mark.django_db
def test_a_resource_with_trailing_slash_drift_is_refused(client, admin, endpoint):
    client_id = register(client)
    client.force_login(admin.user)
    params = authorize_params(client_id, pkce(), endpoint.url + "/")
    assert code_from(client.get("/o/authorize/", params))["error"] == "invalid_target"


def _fresh_code(client: Client, admin, endpoint) -> tuple[str, str, Pkce]:
    """A registered client, and a code alice gave it for an hour on the endpoint."""
    client_id = register(client)
    browser = Client()
    browser.force_login(admin.user)
    proof = pkce()
    code = code_from(
        consent(browser, authorize_params(client_id, proof, endpoint.url), duration=3600)
    )["code"]
    return client_id, code, proof


@pytest.mark.django_db
def test_a_replayed_code_is_refused_and_revokes_the_tokens_it_issued(client, admin, endpoint):
    client_id, code, proof = _fresh_code(client, admin, endpoint)
    first = exchange(client, client_id, code, proof, endpoint.url)
    assert first.status_code == 200
    tokens = _json(first)
    assert principal_from_token(tokens["access_token"]) is not None

    replay = exchange(client, client_id, code, proof, endpoint.url)

    assert replay.status_code == 400
    assert _json(replay)["error"] == "invalid_grant"
    assert principal_from_token(tokens["access_token"]) is None
    refreshed = refresh(client, client_id, tokens["refresh_token"])
    assert refreshed.status_code == 400
    assert _json(refreshed)["error"] == "invalid_grant"
    authorization = OAuthAuthorization.objects.get()
    assert authorization.revoked_at is not None
    event = ManagementEvent.objects.get(action="session.revoked")
    assert event.details["reason"] == "its authorization code was used again"


@pytest.mark.django_db
def test_a_code_replayed_after_housekeeping_deleted_it_still_revokes(client, admin, endpoint):
    client_id, code, proof = _fresh_code(client, admin, endpoint)
    tokens = _json(exchange(client, client_id, code, proof, endpoint.url))
    OAuthGrant.objects.all().delete()  # as clear_expired does once the code expired

    replay = exchange(client, client_id, code, proof, endpoint.url)

    assert _json(replay)["error"] == "invalid_grant"
    assert principal_from_token(tokens["access_token"]) is None


@pytest.mark.django_db
def test_a_code_replayed_by_another_client_revokes_nothing_of_its_owner(client, admin, endpoint):
    client_id, code, proof = _fresh_code(client, admin, endpoint)
    tokens = _json(exchange(client, client_id, code, proof, endpoint.url))
    other_id = register(client)

    assert _json(exchange(client, other_id, code, proof, endpoint.url))["error"] == "invalid_grant"
    assert principal_from_token(tokens["access_token"]) is not None


@pytest.mark.django_db
def test_a_wrong_code_verifier_burns_the_code(client, admin, endpoint):
    client_id, code, proof = _fresh_code(client, admin, endpoint)

    response = exchange(client, client_id, code, pkce(), endpoint.url)
    assert response.status_code == 400
    assert _json(response)["error"] == "invalid_grant"

    late = exchange(client, client_id, code, proof, endpoint.url)
    assert late.status_code == 400
    assert _json(late)["error"] == "invalid_grant"
    assert not OAuthAuthorization.objects.exists()


@pytest.mark.django_db
def test_a_missing_code_verifier_burns_the_code(client, admin, endpoint):
    client_id, code, proof = _fresh_code(client, admin, endpoint)
    response = client.post(
        "/o/token/",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "resource": endpoint.url,
        },
    )
    assert response.status_code == 400
    assert _json(exchange(client, client_id, code, proof, endpoint.url))["error"] == "invalid_grant"
    assert not OAuthAuthorization.objects.exists()


@pytest.mark.django_db
def test_a_token_request_for_another_endpoint_is_refused(client, admin, endpoint, other_endpoint):
    client_id = register(client)
    browser = Client()
    browser.force_login(admin.user)
    proof = pkce()
    code = code_from(
        consent(browser, authorize_params(client_id, proof, endpoint.url), duration=3600)
    )["code"]
    response = exchange(client, client_id, code, proof, other_endpoint.url)
    assert response.status_code == 400
    assert _json(response)["error"] == "invalid_target"


# --- refresh and the duration ------------------------------------------------------------


@pytest.mark.django_db
def test_refresh_rotates_inside_the_duration(authorized):
    client, client_id, tokens = authorized
    response = refresh(client, client_id, tokens["refresh_token"])
    assert response.status_code == 200
    renewed = _json(response)
    assert renewed["refresh_token"] != tokens["refresh_token"]
    assert principal_from_token(renewed["access_token"]) is not None
    authorization = OAuthAuthorization.objects.get()
    assert authorization.access_tokens.count() >= 1
    assert authorization.refresh_tokens.filter(revoked__isnull=True).count() == 1


@pytest.mark.django_db
def test_a_replayed_refresh_token_is_refused(authorized):
    client, client_id, tokens = authorized
    assert refresh(client, client_id, tokens["refresh_token"]).status_code == 200
    replay = refresh(client, client_id, tokens["refresh_token"])
    assert replay.status_code == 400
    assert _json(replay)["error"] == "invalid_grant"


@pytest.mark.django_db
def test_refresh_near_the_end_caps_the_access_token(authorized):
    client, client_id, tokens = authorized
    OAuthAuthorization.objects.update(expires_at=timezone.now() + timedelta(seconds=90))
    renewed = _json(refresh(client, client_id, tokens["refresh_token"]))
    assert renewed["expires_in"] <= 90


@pytest.mark.django_db
def test_nothing_works_after_the_duration(authorized):
    client, client_id, tokens = authorized
    OAuthAuthorization.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert principal_from_token(tokens["access_token"]) is None
    response = refresh(client, client_id, tokens["refresh_token"])
    assert response.status_code == 400
    assert _json(response)["error"] == "invalid_grant"


@pytest.mark.django_db
def test_revoking_the_authorization_ends_its_tokens(authorized):
    client, client_id, tokens = authorized
    oauth_authorization_revoke(authorization=OAuthAuthorization.objects.get())
    assert principal_from_token(tokens["access_token"]) is None
    assert refresh(client, client_id, tokens["refresh_token"]).status_code == 400


@pytest.mark.django_db
def test_a_registration_token_is_no_mcp_token(client):
    body = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    response = client.post("/o/register/", json.dumps(body), content_type="application/json")
    assert principal_from_token(_json(response)["registration_access_token"]) is None


# --- client ID metadata documents -----------------------------------------------------------


@pytest.mark.django_db
def test_a_metadata_document_on_a_private_address_is_never_fetched(
    client, admin, endpoint, monkeypatch
):
    import socket

    attempts: list[object] = []

    def no_connect(*args, **kwargs):
        attempts.append(args)  # recorded: the fetcher may swallow the error raised here
        raise AssertionError("the CIMD fetcher connected to a private address")

    monkeypatch.setattr(socket, "create_connection", no_connect)
    monkeypatch.setattr(socket.socket, "connect", no_connect)
    client.force_login(admin.user)
    params = authorize_params("https://127.0.0.1/client.json", pkce(), endpoint.url)
    response = client.get("/o/authorize/", params)
    assert response.status_code in (400, 401)
    assert "cannot be used" in response.content.decode()
    assert attempts == []
    assert not OAuthApplication.objects.filter(client_id__startswith="https://").exists()


@pytest.mark.django_db
def test_an_http_metadata_document_url_is_refused(client, admin, endpoint):
    client.force_login(admin.user)
    params = authorize_params("http://clients.example.com/app.json", pkce(), endpoint.url)
    response = client.get("/o/authorize/", params)
    assert response.status_code in (400, 401)
    assert not OAuthApplication.objects.exists()


@pytest.mark.django_db
def test_the_housekeeping_task_deletes_stale_registrations(client):
    from oauth.tasks import oauth_housekeeping

    register(client)
    OAuthApplication.objects.update(created=timezone.now() - timedelta(days=30))
    assert oauth_housekeeping() == 1
    assert not OAuthApplication.objects.exists()


@pytest.mark.django_db
def test_the_activity_log_knows_who_holds_an_expired_oauth_token(authorized, admin):
    from audit.selectors import token_identity

    _, _, tokens = authorized
    OAuthAuthorization.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    who = token_identity(raw=tokens["access_token"])
    assert who is not None
    assert (who.user_id, who.token_kind, who.client_name) == (admin.user.pk, "oauth", "Test agent")
    assert who.revoked is True


# --- redirect URIs at authorization (RFC 9700) ----------------------------------------------


def _legacy_client(uri: str) -> OAuthApplication:
    """A client stored before the redirect rules existed (``save`` skips ``clean``)."""
    return OAuthApplication.objects.create(
        name="Old agent",
        client_type="public",
        authorization_grant_type="authorization-code",
        redirect_uris=uri,
        registration_source="dcr",
    )


@pytest.mark.django_db
def test_no_code_goes_to_a_plain_http_remote_redirect_registered_earlier(client, admin, endpoint):
    application = _legacy_client("http://app.example.com/cb")
    client.force_login(admin.user)
    params = authorize_params(
        application.client_id, pkce(), endpoint.url, redirect_uri="http://app.example.com/cb"
    )
    response = client.get("/o/authorize/", params)
    assert response.status_code == 400
    assert "cannot be used" in response.content.decode()
    # Without redirect_uri the registered one would be the default: refused the same way.
    params.pop("redirect_uri")
    response = client.get("/o/authorize/", params)
    assert response.status_code == 400
    assert "cannot be used" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("uri", "shown", "loopback"),
    [
        ("https://app.example.com/cb", "https://app.example.com", False),
        ("https://127.0.0.1.example.com/cb", "https://127.0.0.1.example.com", False),
        ("http://127.0.0.1:3030/callback", "http://127.0.0.1:3030", True),
        ("cursor://anysphere.cursor-retrieval/cb", "cursor://anysphere.cursor-retrieval", False),
    ],
)
def test_the_consent_page_shows_where_the_code_goes_with_its_scheme(
    client, admin, endpoint, uri, shown, loopback
):
    client_id = register(client, redirect_uris=[uri])
    client.force_login(admin.user)
    page = client.get(
        "/o/authorize/", authorize_params(client_id, pkce(), endpoint.url, redirect_uri=uri)
    )
    assert page.status_code == 200, page.content
    html = page.content.decode()
    assert f'<code class="redirect-origin">{shown}</code>' in html
    assert ("(an app on this computer)" in html) is loopback


class DocumentFetcher:
    """Stands in for the network part of DOT's fetcher only: the document comes from
    here, and DOT validates and stores it as it would a fetched one."""

    documents: dict[str, dict] = {}

    def fetch(self, client_id: str) -> tuple[dict, int]:
        return self.documents[client_id], 300


@pytest.fixture
def metadata_documents(settings):
    settings.OAUTH2_PROVIDER = {
        **settings.OAUTH2_PROVIDER,
        "CIMD_METADATA_FETCHER": f"{__name__}.DocumentFetcher",
    }
    DocumentFetcher.documents = {}
    yield DocumentFetcher.documents
    DocumentFetcher.documents = {}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("redirect", "accepted"),
    [("https://agent.example.com/cb", True), ("http://agent.example.com/cb", False)],
)
def test_a_client_metadata_document_follows_the_same_redirect_rules(
    client, admin, endpoint, metadata_documents, redirect, accepted
):
    client_id = "https://agent.example.com/client.json"
    metadata_documents[client_id] = {
        "client_id": client_id,
        "client_name": "Doc agent",
        "redirect_uris": [redirect],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
    }
    client.force_login(admin.user)
    params = authorize_params(client_id, pkce(), endpoint.url, redirect_uri=redirect)
    response = client.get("/o/authorize/", params)
    assert (response.status_code == 200) is accepted, response.content
    assert OAuthApplication.objects.filter(client_id=client_id).exists() is accepted


@pytest.mark.django_db(transaction=True)
def test_concurrent_exchanges_of_one_code_leave_no_working_token(admin, endpoint):
    import threading

    from django.db import connection

    client_id, code, proof = _fresh_code(Client(), admin, endpoint)
    start = threading.Barrier(4)
    answers: list[tuple[int, dict]] = []

    def attempt() -> None:
        try:
            start.wait(timeout=10)
            response = exchange(Client(), client_id, code, proof, endpoint.url)
            answers.append((response.status_code, _json(response)))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(answers) == 4
    assert sum(status == 200 for status, _ in answers) <= 1
    for status, body in answers:
        if status == 200:
            assert principal_from_token(body["access_token"]) is None
        else:
            assert body["error"] == "invalid_grant"
    assert not OAuthAuthorization.objects.filter(revoked_at__isnull=True).exists()
