"""Personal credentials in the browser: "My connections" (paste a token, disconnect, sign in
to an OAuth-protected upstream through its own page), the connection form's credential
fields, and the consent page's prompt for servers the user has not connected yet."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client as DjangoClient
from playwright.sync_api import Page, expect

from connections.models import Connection, CredentialState, UpstreamCredential
from connections.services import connection_create
from endpoints.services import endpoint_create, endpoint_entries_set_enabled
from tests.browser.test_connection_pages import field, prop, sign_in
from tests.conftest import Person
from tests.connections.conftest import start_oauth_upstream  # noqa: F401  (a fixture)

pytestmark = pytest.mark.browser

TOKEN = "bob-own-token-4242"
CALLBACK = "http://127.0.0.1:3032/callback"


def page_html(page: Page) -> str:
    return page.content()


def row(page: Page, slug: str) -> Any:
    return page.locator(f"#my-connection-{slug}")


def test_a_member_adds_and_removes_their_own_token(page: Page, member: Person, org) -> None:
    connection = connection_create(
        organization=org,
        name="Tickets",
        slug="tickets",
        server_url="https://tickets.example.com/mcp",
        auth_type="bearer",
        credential_mode="personal",
    )
    connection_create(organization=org, name="Shared", server_url="https://s.example.com/mcp")
    sign_in(page, "bob")

    page.get_by_role("link", name="My connections").click()
    expect(page.get_by_role("heading", name="My connections")).to_be_visible()
    expect(page.locator("#my-connections tbody tr")).to_have_count(1)  # personal ones only
    expect(row(page, "tickets").locator(".credential-state")).to_have_text("Not connected")

    page.get_by_label("Your token for Tickets").fill(TOKEN)
    row(page, "tickets").get_by_role("button", name="Save").click()

    expect(page.get_by_role("status")).to_contain_text("Your token for “Tickets” is saved.")
    expect(row(page, "tickets").locator(".credential-state")).to_have_text("Connected")
    assert TOKEN not in page_html(page)
    assert UpstreamCredential.objects.get(connection=connection).bearer == TOKEN

    # The connection's page shows bob his own row, never the token.
    page.goto(f"/connections/{connection.pk}")
    expect(prop(page, "Credentials")).to_have_text("Personal: each user brings their own")
    expect(page.locator("#credential-table tbody tr")).to_have_count(1)
    expect(page.locator("#credential-table")).to_contain_text("bob")
    assert TOKEN not in page_html(page)

    page.goto("/me/connections")
    row(page, "tickets").get_by_role("button", name="Disconnect").click()
    expect(page.get_by_role("status")).to_contain_text("“Tickets” is disconnected")
    expect(row(page, "tickets").locator(".credential-state")).to_have_text("Not connected")
    assert not UpstreamCredential.objects.exists()

    # A bad token is refused with its reason.
    page.get_by_label("Your token for Tickets").fill("two words")
    row(page, "tickets").get_by_role("button", name="Save").click()
    expect(page.locator(".message.error")).to_contain_text("cannot contain spaces")


def test_an_admin_makes_a_connection_personal_with_oauth(page: Page, admin: Person) -> None:
    sign_in(page, "alice")
    page.goto("/connections/new")
    expect(page.locator("#oauth-fields")).to_be_hidden()
    field(page, "Name").fill("Signed")
    field(page, "Server URL").fill("https://signed.example.com/mcp")
    field(page, "Authentication").select_option(label="OAuth (sign in to the server)")
    expect(page.locator("#oauth-fields")).to_be_visible()
    expect(page.locator("#oauth-redirect-uri")).to_contain_text("/connections/oauth/callback")
    field(page, "Credentials").select_option(label="Personal: each user brings their own")
    field(page, "OAuth scopes").fill("mcp:tools")
    page.get_by_role("button", name="Create connection").click()

    connection = Connection.objects.get()
    expect(page).to_have_url(re.compile(rf"/connections/{connection.pk}$"))
    expect(prop(page, "Authentication")).to_have_text("OAuth (sign in to the server)")
    expect(prop(page, "OAuth client")).to_contain_text("registered at the first sign-in")
    expect(page.locator("#no-credentials")).to_have_text("Nobody has connected yet.")
    assert connection.is_personal and connection.is_oauth
    assert connection.oauth_scopes == "mcp:tools"


def test_a_user_signs_in_to_an_oauth_server_on_its_own_page(
    page: Page,
    admin: Person,
    org,
    settings,
    live_server,
    start_oauth_upstream,  # noqa: F811
) -> None:
    settings.GATEWAY_PUBLIC_URL = live_server.url
    upstream = start_oauth_upstream()
    connection = connection_create(
        organization=org,
        name="Signed",
        slug="signed",
        server_url=upstream.url,
        auth_type="oauth",
        credential_mode="personal",
    )
    sign_in(page, "alice")
    page.goto("/me/connections")

    row(page, "signed").get_by_role("button", name="Sign in to Signed").click()
    # The upstream's own sign-in page, in the same browser.
    expect(page.get_by_role("heading", name="Sign in to the test upstream")).to_be_visible()
    page.fill("#username", "alice-up")
    page.click("#allow")

    expect(page).to_have_url(re.compile(r"/me/connections$"))
    expect(page.get_by_role("status")).to_contain_text("You are connected to “Signed”.")
    expect(row(page, "signed").locator(".credential-state")).to_have_text("Connected")
    credential = UpstreamCredential.objects.get(connection=connection)
    assert credential.state == CredentialState.VALID and credential.refresh_token
    assert credential.bearer and credential.bearer not in page_html(page)
    [authorize] = [e for e in upstream.events() if e["event"] == "authorize"]
    assert authorize["resource"] == upstream.url and authorize["code_challenge"]

    # Marked as needing a new sign-in, it says so, and signing in again repairs it.
    UpstreamCredential.objects.update(
        state=CredentialState.NEEDS_REAUTH, state_reason="The server refused (invalid_grant)."
    )
    page.reload()
    expect(row(page, "signed").locator(".credential-state")).to_have_text(
        "Needs your sign-in again"
    )
    expect(row(page, "signed").locator(".reauth-reason")).to_contain_text("invalid_grant")
    row(page, "signed").get_by_role("button", name="Sign in again").click()
    page.fill("#username", "alice-up")
    page.click("#allow")
    expect(row(page, "signed").locator(".credential-state")).to_have_text("Connected")


def _authorize_path(base: str, resource: str) -> str:
    client_id = json.loads(
        DjangoClient()
        .post(
            "/o/register/",
            json.dumps(
                {
                    "client_name": "Desk agent",
                    "redirect_uris": [CALLBACK],
                    "token_endpoint_auth_method": "none",
                }
            ),
            content_type="application/json",
        )
        .content
    )["client_id"]
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": CALLBACK,
            "scope": "mcp",
            "state": "st-1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": resource,
        }
    )
    return f"/o/authorize/?{query}"


def test_the_consent_page_prompts_for_missing_credentials_without_blocking(
    page: Page,
    admin: Person,
    org,
    settings,
    live_server,
    start_oauth_upstream,  # noqa: F811
) -> None:
    settings.GATEWAY_PUBLIC_URL = live_server.url
    upstream = start_oauth_upstream()
    tickets = connection_create(
        organization=org,
        name="Tickets",
        slug="tickets",
        server_url="https://tickets.example.com/mcp",
        auth_type="bearer",
        credential_mode="personal",
    )
    signed = connection_create(
        organization=org,
        name="Signed",
        slug="signed",
        server_url=upstream.url,
        auth_type="oauth",
        credential_mode="personal",
    )
    endpoint = endpoint_create(
        organization=org, name="Desk", slug="desk", connection_ids=[tickets.pk, signed.pk]
    )
    for connection, key in ((tickets, "search"), (signed, "whoami")):
        entry = connection.catalog.create(
            kind="tool", key=key, name=key, definition={"name": key}, definition_hash=key
        )
        endpoint_entries_set_enabled(endpoint=endpoint, entry_ids=[entry.pk], enabled=True)
    captured: list[str] = []

    def catch(route: Any) -> None:
        captured.append(route.request.url)
        route.fulfill(status=200, body="back at the client")

    page.route("http://127.0.0.1:3032/**", catch)
    sign_in(page, "alice")
    page.goto(_authorize_path(live_server.url, f"{live_server.url}/mcp/desk"))

    prompt = page.locator("#missing-credentials")
    expect(prompt).to_contain_text("Connect your own accounts")
    expect(prompt.locator("li")).to_have_count(2)

    # A token first: My connections, then straight back to the consent page.
    prompt.locator("li[data-server=tickets]").get_by_role("link", name="Add your token").click()
    expect(page.locator("#return-note")).to_be_visible()
    page.get_by_label("Your token for Tickets").fill(TOKEN)
    row(page, "tickets").get_by_role("button", name="Save").click()
    expect(page.locator("#authorizationForm")).to_be_visible()
    expect(prompt.locator("li")).to_have_count(1)

    # Then the OAuth one: the upstream's page, and back to the consent page again.
    prompt.get_by_role("button", name="Sign in to Signed").click()
    page.fill("#username", "alice-up")
    page.click("#allow")
    expect(page.locator("#authorizationForm")).to_be_visible()
    expect(page.locator("#missing-credentials")).to_have_count(0)  # prompted once
    assert UpstreamCredential.objects.filter(user=admin.user).count() == 2

    # Nothing blocked the consent itself.
    page.get_by_role("button", name="Allow").click()
    for _ in range(100):
        if captured:
            break
        page.wait_for_timeout(50)
    assert captured and "code=" in captured[0], page.content()[-2000:]
