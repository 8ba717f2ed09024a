"""Upstream OAuth against a real OAuth-protected MCP server (its own authorization server,
on loopback): discovery, registration (client ID metadata document, dynamic, entered by
an admin), sign-in with PKCE, per-user tokens, refresh before expiry and on 401, a revoked
refresh token, shared mode, and no secret in the logs, the API or the pages."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from audit.models import AuditRecord, ManagementEvent
from connections import tasks
from connections.models import (
    CatalogEntry,
    CatalogKind,
    Connection,
    CredentialState,
    UpstreamCredential,
)
from connections.services import connection_check_health, connection_create
from endpoints.services import endpoint_create, endpoint_entries_set_enabled
from tests.factories import PASSWORD


@pytest.fixture
def people(admin, member, settings):
    """alice (admin) and bob (member), with passwords the live gateway can check."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    for person in (admin, member):
        person.user.set_password(PASSWORD)
        person.user.save()
    return admin, member


def browser(base: str, username: str) -> httpx.Client:
    """An HTTP client signed in to the gateway's pages as ``username``."""
    http = httpx.Client(base_url=base, timeout=20)
    http.get("/accounts/login/")
    response = http.post(
        "/accounts/login/",
        data={
            "username": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": http.cookies["csrftoken"],
        },
        headers={"Referer": base},
    )
    assert response.status_code == 302, response.text[-500:]
    return http


def post_form(http: httpx.Client, path: str, **data: str) -> httpx.Response:
    return http.post(
        path,
        data={"csrfmiddlewaretoken": http.cookies["csrftoken"], **data},
        headers={"Referer": str(http.base_url)},
    )


@dataclass
class SignIn:
    authorize_url: str
    callback_url: str
    finished: httpx.Response


def sign_in(http: httpx.Client, start_path: str, upstream_user: str, **form: str) -> SignIn:
    """Start a sign-in on the gateway, sign in at the upstream as ``upstream_user`` (its own
    page, no browser needed), and follow the redirect back to the gateway's callback."""
    started = post_form(http, start_path, **form)
    assert started.status_code == 302, started.text[-1000:]
    authorize_url = started.headers["location"]
    with httpx.Client(timeout=20) as upstream:
        login = upstream.get(authorize_url)
        assert login.status_code == 302, login.text
        page = login.headers["location"]
        assert upstream.get(page).status_code == 200
        approved = upstream.post(page, data={"username": upstream_user})
        assert approved.status_code == 302, approved.text
    callback_url = approved.headers["location"]
    assert callback_url.startswith(f"{str(http.base_url).rstrip('/')}/connections/oauth/callback?")
    finished = http.get(callback_url)
    return SignIn(authorize_url=authorize_url, callback_url=callback_url, finished=finished)


async def call(url: str, api_token: str, tool: str = "signed__whoami") -> tuple[bool, str]:
    headers = {"Authorization": f"Bearer {api_token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), cache=None) as client,
    ):
        result = await client.session.call_tool(tool, {"echo": "hello"})
    content = result.content[0]
    assert isinstance(content, types.TextContent)
    return bool(result.is_error), content.text


def serve(connection: Connection, organization) -> str:
    """An endpoint ``team`` serving the connection's tools (after a check fetched them)."""
    endpoint = endpoint_create(
        organization=organization, name="Team", slug="team", connection_ids=[connection.pk]
    )
    entries = CatalogEntry.objects.filter(connection=connection, kind=CatalogKind.TOOL)
    assert {e.key for e in entries} == {"whoami", "echo"}
    endpoint_entries_set_enabled(endpoint=endpoint, entry_ids=[e.pk for e in entries], enabled=True)
    return "team"


def personal_oauth(organization, upstream, **fields) -> Connection:
    return connection_create(
        organization=organization,
        name="Signed",
        slug="signed",
        server_url=upstream.url,
        auth_type="oauth",
        credential_mode="personal",
        **fields,
    )


def stored(user) -> UpstreamCredential:
    return UpstreamCredential.objects.get(user=user)


# --- the whole flow, dynamic registration ----------------------------------------------------


def test_each_user_signs_in_and_the_upstream_sees_their_own_token(
    live_gateway, start_oauth_upstream, people
):
    alice, bob = people
    upstream = start_oauth_upstream()
    connection = personal_oauth(alice.organization, upstream)
    gateway = live_gateway()

    # alice signs in through My connections: discovery, registration, authorization.
    alice_pages = browser(gateway.base, "alice")
    done = sign_in(alice_pages, f"/me/connections/{connection.pk}/connect", "alice-up")
    assert done.finished.status_code == 302
    assert done.finished.headers["location"] == "/me/connections"

    query = parse_qs(urlsplit(done.authorize_url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) >= 43
    assert query["resource"] == [upstream.url]
    assert query["scope"] == ["mcp:tools"]
    assert query["redirect_uri"] == [f"{gateway.base}/connections/oauth/callback"]
    state = query["state"][0]
    assert len(state) >= 32
    events = upstream.events()
    [registered] = [e for e in events if e["event"] == "registered"]
    assert registered["auth_method"] == "client_secret_post"
    assert registered["redirect_uris"] == [f"{gateway.base}/connections/oauth/callback"]
    [exchange] = [e for e in events if e["event"] == "token"]
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["resource"] == upstream.url
    assert exchange["has_verifier"]
    connection.refresh_from_db()
    assert connection.oauth_registration == "dcr"
    assert connection.oauth_client_secret  # a confidential client, secret kept encrypted

    # The state was single-use: the same answer again is refused, and no token is stored twice.
    replay = alice_pages.get(done.callback_url)
    assert replay.status_code == 400
    assert "already completed or has expired" in replay.text

    # bob signs in as himself at the upstream.
    bob_pages = browser(gateway.base, "bob")
    sign_in(bob_pages, f"/me/connections/{connection.pk}/connect", "bob-up")

    check = connection_check_health(connection=connection, user=alice.user)
    assert check.ok, check.error
    url = gateway.endpoint_url(serve(connection, alice.organization))

    alice_error, alice_seen = asyncio.run(call(url, alice.token))
    bob_error, bob_seen = asyncio.run(call(url, bob.token))
    assert not alice_error and json.loads(alice_seen) == {"subject": "alice-up"}
    assert not bob_error and json.loads(bob_seen) == {"subject": "bob-up"}
    tool_calls = [c for c in upstream.calls() if c["method"] == "tools/call"]
    alice_token, bob_token = stored(alice.user).bearer, stored(bob.user).bearer
    assert [(c["subject"], c["token"]) for c in tool_calls] == [
        ("alice-up", alice_token),
        ("bob-up", bob_token),
    ]
    # Never the client's gateway token, on any request.
    assert all(c["token"] not in (alice.token, bob.token) for c in upstream.calls())

    # The pages and the API say who is connected, without any secret.
    page = alice_pages.get("/me/connections").text
    assert 'data-state="valid"' in page and "Connected" in page
    detail = alice_pages.get(f"/connections/{connection.pk}").text
    api = httpx.get(
        f"{gateway.base}/api/mcp-connections/{connection.pk}/credentials",
        headers={"Authorization": f"Bearer {alice.token}"},
    )
    assert [row["username"] for row in api.json()["credentials"]] == ["alice", "bob"]
    secrets = [
        alice_token,
        bob_token,
        stored(alice.user).refresh_token,
        connection.oauth_client_secret,
        state,
    ]
    everything = page + detail + api.text + gateway.log_text()
    for secret in secrets:
        assert secret and secret not in everything
    for event in ManagementEvent.objects.all():
        assert not any(s in json.dumps(event.details) for s in secrets)
    assert ManagementEvent.objects.filter(details__change="personal_oauth_connected").count() == 2
    assert ManagementEvent.objects.filter(details__change="oauth_client_registered").count() == 1


def test_the_sign_in_state_is_bound_to_the_user_who_started_it(
    live_gateway, start_oauth_upstream, people
):
    alice, _bob = people
    upstream = start_oauth_upstream()
    connection = personal_oauth(alice.organization, upstream)
    gateway = live_gateway()
    alice_pages = browser(gateway.base, "alice")
    started = post_form(alice_pages, f"/me/connections/{connection.pk}/connect")
    with httpx.Client(timeout=20) as up:
        page = up.get(started.headers["location"]).headers["location"]
        callback = up.post(page, data={"username": "alice-up"}).headers["location"]

    stolen = browser(gateway.base, "bob").get(callback)

    assert stolen.status_code == 400
    assert "started by someone else" in stolen.text
    assert not UpstreamCredential.objects.exists()
    # Used up by the attempt: alice cannot complete it either, she starts again.
    assert alice_pages.get(callback).status_code == 400
    assert alice_pages.get("/connections/oauth/callback").status_code == 400


# --- refresh ---------------------------------------------------------------------------------


@pytest.fixture
def signed_in(live_gateway, start_oauth_upstream, people):
    """alice signed in (as alice-up) to a personal-mode OAuth server served on ``team``."""

    def make(*flags: str):
        alice, _bob = people
        upstream = start_oauth_upstream(*flags)
        connection = personal_oauth(alice.organization, upstream)
        gateway = live_gateway()
        pages = browser(gateway.base, "alice")
        sign_in(pages, f"/me/connections/{connection.pk}/connect", "alice-up")
        assert connection_check_health(connection=connection, user=alice.user).ok
        url = gateway.endpoint_url(serve(connection, alice.organization))
        return upstream, connection, gateway, url, pages

    return make


def test_tokens_are_refreshed_before_they_expire_by_the_periodic_task(
    signed_in, people, settings, monkeypatch
):
    alice, _ = people
    settings.GATEWAY_UPSTREAM_OAUTH_REFRESH_MARGIN = 300
    upstream, _connection, _gateway, url, _ = signed_in("--access-ttl", "120")
    before = stored(alice.user)
    queued: list[str] = []
    monkeypatch.setattr(
        tasks.upstream_credential_refresh,
        "apply_async",
        lambda args, expires: queued.append(args[0]),
    )

    assert tasks.upstream_credentials_refresh_due() == 1
    assert queued == [str(before.pk)]
    assert tasks.upstream_credential_refresh(queued[0]) == "refreshed"

    after = stored(alice.user)
    assert after.bearer != before.bearer
    assert after.refresh_token != before.refresh_token  # rotated by the server
    assert after.refreshed_at > before.refreshed_at
    refreshes = [e for e in upstream.events() if e.get("grant_type") == "refresh_token"]
    assert len(refreshes) == 1 and refreshes[0]["resource"] == upstream.url
    # The next call uses the new token at once (every process dropped the old target).
    error, seen = asyncio.run(call(url, alice.token))
    assert not error and json.loads(seen) == {"subject": "alice-up"}
    assert upstream.calls()[-1]["token"] == after.bearer


def test_a_401_refreshes_the_token_and_the_call_goes_through(signed_in, people):
    alice, _ = people
    upstream, _connection, _gateway, url, _ = signed_in()
    before = stored(alice.user).bearer
    assert not asyncio.run(call(url, alice.token))[0]  # the gateway's session is open
    assert upstream.control("expire-access", "alice-up") == {"expired": 1}

    error, seen = asyncio.run(call(url, alice.token))

    assert not error, seen
    assert json.loads(seen) == {"subject": "alice-up"}
    after = stored(alice.user).bearer
    assert after != before
    tokens = [c["token"] for c in upstream.calls() if c["method"] == "tools/call"]
    assert tokens[-2:] == [before, after]  # refused once, then sent again with the new one
    assert [e["grant_type"] for e in upstream.events() if e["event"] == "token"] == [
        "authorization_code",
        "refresh_token",
    ]


def test_many_calls_refused_at_once_refresh_the_token_once(signed_in, people):
    alice, _ = people
    upstream, _connection, _gateway, url, _ = signed_in()
    assert not asyncio.run(call(url, alice.token))[0]
    upstream.control("expire-access", "alice-up")

    async def many() -> list[tuple[bool, str]]:
        return list(await asyncio.gather(*(call(url, alice.token) for _ in range(8))))

    results = asyncio.run(many())

    assert all(not error for error, _ in results), results
    grants = [e for e in upstream.events() if e.get("grant_type") == "refresh_token"]
    assert len(grants) == 1


def test_a_revoked_refresh_token_asks_the_user_to_sign_in_again(signed_in, people):
    alice, _ = people
    upstream, connection, gateway, url, pages = signed_in()
    upstream.control("revoke-refresh", "alice-up")
    upstream.control("expire-access", "alice-up")

    error, text = asyncio.run(call(url, alice.token))

    assert error
    assert "Your sign-in to the server 'Signed' has expired or was revoked" in text
    assert f"{gateway.base}/me/connections" in text
    credential = stored(alice.user)
    assert credential.state == CredentialState.NEEDS_REAUTH
    assert "invalid_grant" in credential.state_reason
    # The next call fails fast with the same message, without asking the upstream.
    calls_before = len(upstream.calls())
    error, again = asyncio.run(call(url, alice.token))
    assert error and again == text
    assert len(upstream.calls()) == calls_before
    # The pages and the API show it; the change is recorded (by the system).
    page = pages.get("/me/connections").text
    assert 'data-state="needs_reauth"' in page and "Needs your sign-in again" in page
    assert "needs re-auth" in pages.get(f"/connections/{connection.pk}").text
    api = httpx.get(
        f"{gateway.base}/api/mcp-connections/{connection.pk}/credentials",
        headers={"Authorization": f"Bearer {alice.token}"},
    )
    assert api.json()["credentials"][0]["state"] == "needs_reauth"
    event = ManagementEvent.objects.get(details__change="needs_reauth")
    assert event.actor_id is None and event.details["user"] == "alice"
    # Signing in again makes it valid.
    sign_in(pages, f"/me/connections/{connection.pk}/connect", "alice-up")
    assert stored(alice.user).state == CredentialState.VALID
    error, seen = asyncio.run(call(url, alice.token))
    assert not error and json.loads(seen) == {"subject": "alice-up"}
    # The activity log kept the calls and no token.
    deadline = time.monotonic() + 10
    while AuditRecord.objects.filter(method="tools/call").count() < 3:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert not any(
        stored(alice.user).bearer in f"{r.arguments}{r.result}{r.error_message}"
        for r in AuditRecord.objects.all()
    )


# --- registration: client ID metadata document, an admin's client, none possible -------------


def test_a_server_supporting_client_id_metadata_documents_gets_the_gateways_url(
    live_gateway, start_oauth_upstream, people
):
    alice, _ = people
    upstream = start_oauth_upstream("--cimd")
    connection = personal_oauth(alice.organization, upstream)
    gateway = live_gateway()

    done = sign_in(
        browser(gateway.base, "alice"), f"/me/connections/{connection.pk}/connect", "alice-up"
    )

    assert done.finished.status_code == 302
    client_id = f"{gateway.base}/oauth/upstream-client.json"
    assert parse_qs(urlsplit(done.authorize_url).query)["client_id"] == [client_id]
    events = upstream.events()
    assert {"event": "cimd_fetched", "client_id": client_id} in events
    assert not [e for e in events if e["event"] == "registered"]
    connection.refresh_from_db()
    assert connection.oauth_registration == "cimd"
    document = httpx.get(client_id).json()
    assert document["client_id"] == client_id
    assert document["redirect_uris"] == [f"{gateway.base}/connections/oauth/callback"]
    assert document["token_endpoint_auth_method"] == "none"
    assert stored(alice.user).bearer


def test_an_admin_entered_client_is_used_with_its_secret(
    live_gateway, start_oauth_upstream, people
):
    alice, _ = people
    gateway = live_gateway()
    upstream = start_oauth_upstream(
        "--no-dcr",
        "--client",
        "gw-client:gw-secret-value-99",
        "--client-redirect",
        f"{gateway.base}/connections/oauth/callback",
    )
    response = httpx.post(
        f"{gateway.base}/api/mcp-connections",
        headers={"Authorization": f"Bearer {alice.token}"},
        json={
            "name": "Signed",
            "slug": "signed",
            "serverUrl": upstream.url,
            "authType": "oauth",
            "credentialMode": "personal",
            "oauthClientId": "gw-client",
            "oauthClientSecret": "gw-secret-value-99",
        },
    )
    assert response.status_code == 201, response.text
    connection = Connection.objects.get(pk=response.json()["id"])

    sign_in(browser(gateway.base, "alice"), f"/me/connections/{connection.pk}/connect", "a-up")

    [exchange] = [e for e in upstream.events() if e["event"] == "token"]
    assert exchange["client_id"] == "gw-client" and exchange["basic_auth"]
    assert stored(alice.user).bearer
    assert "gw-secret-value-99" not in gateway.log_text()


def test_a_server_offering_no_registration_is_explained(live_gateway, start_oauth_upstream, people):
    alice, _ = people
    upstream = start_oauth_upstream("--no-dcr")
    connection = personal_oauth(alice.organization, upstream)
    gateway = live_gateway()
    pages = browser(gateway.base, "alice")

    started = post_form(pages, f"/me/connections/{connection.pk}/connect")

    assert started.status_code == 302 and started.headers["location"] == "/me/connections"
    page = pages.get("/me/connections").text
    assert "enter the client id and secret it gave you" in page
    assert not UpstreamCredential.objects.exists()


def test_a_server_without_oauth_metadata_is_explained(live_gateway, start_upstream, people):
    alice, _ = people
    plain = start_upstream(token="static-token-123")
    connection = personal_oauth(alice.organization, plain)
    gateway = live_gateway()
    pages = browser(gateway.base, "alice")

    post_form(pages, f"/me/connections/{connection.pk}/connect")

    assert "publishes no OAuth protected-resource metadata" in pages.get("/me/connections").text


# --- shared mode -----------------------------------------------------------------------------


def test_in_shared_mode_an_admin_signs_in_once_for_everyone(
    live_gateway, start_oauth_upstream, people
):
    alice, bob = people
    upstream = start_oauth_upstream()
    connection = connection_create(
        organization=alice.organization,
        name="Signed",
        slug="signed",
        server_url=upstream.url,
        auth_type="oauth",
    )
    gateway = live_gateway()
    pages = browser(gateway.base, "alice")
    # Members may not; the admin does it on the connection's page.
    assert (
        post_form(
            browser(gateway.base, "bob"), f"/connections/{connection.pk}/oauth/connect"
        ).status_code
        == 403
    )

    done = sign_in(pages, f"/connections/{connection.pk}/oauth/connect", "team-account")

    assert done.finished.headers["location"] == f"/connections/{connection.pk}"
    shared = UpstreamCredential.objects.get(user__isnull=True)
    assert "connected" in pages.get(f"/connections/{connection.pk}").text
    assert connection_check_health(connection=connection).ok
    url = gateway.endpoint_url(serve(connection, alice.organization))
    for person in (alice, bob):
        error, seen = asyncio.run(call(url, person.token))
        assert not error and json.loads(seen) == {"subject": "team-account"}
    tokens = {c["token"] for c in upstream.calls() if c["method"] == "tools/call"}
    assert tokens == {shared.bearer}
    api = httpx.get(
        f"{gateway.base}/api/mcp-connections/{connection.pk}",
        headers={"Authorization": f"Bearer {bob.token}"},
    )
    assert api.json()["sharedCredentialState"] == "valid"
    assert shared.bearer not in api.text


def test_shared_mode_bearer_is_unchanged(live_gateway, start_upstream, people):
    alice, bob = people
    upstream = start_upstream(token="static-token-123", tools=3)
    connection = connection_create(
        organization=alice.organization,
        name="Signed",
        slug="signed",
        server_url=upstream.url,
        auth_type="bearer",
        token="static-token-123",
    )
    assert connection_check_health(connection=connection).ok
    endpoint = endpoint_create(
        organization=alice.organization, name="Team", slug="team", connection_ids=[connection.pk]
    )
    whoami = CatalogEntry.objects.get(connection=connection, key="whoami")
    endpoint_entries_set_enabled(endpoint=endpoint, entry_ids=[whoami.pk], enabled=True)
    gateway = live_gateway()

    for person in (alice, bob):
        error, seen = asyncio.run(call(gateway.endpoint_url("team"), person.token))
        assert not error
        assert json.loads(seen)["authorization"] == "Bearer static-token-123"


def test_the_client_metadata_document_is_public_json(live_gateway):
    gateway = live_gateway()

    document = httpx.get(f"{gateway.base}/oauth/upstream-client.json")

    assert document.status_code == 200
    assert document.json()["client_name"] == f"MCP Gateway (127.0.0.1:{gateway.port})"
    assert re.match(r"^(native|web)$", document.json()["application_type"])
