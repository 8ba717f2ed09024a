"""The admin UI's connection pages, driven in headless Chromium against a live server.

Playwright's sync API keeps an asyncio event loop running in this thread, so the
ORM calls made by fixtures, assertions and pytest-django's database flush need
``DJANGO_ALLOW_ASYNC_UNSAFE`` for as long as the browser is up.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import pytest
from playwright.sync_api import Locator, Page, expect

from connections.models import AuthType, Connection
from oauth.models import Organization
from tests.conftest import Person
from tests.factories import PASSWORD, ConnectionFactory

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/connection-detail.png")
TOKEN = "sk-live-SECRET-123"


# --- helpers (the browser and page fixtures are in conftest.py) ---------------------------


def field(page: Page, label: str) -> Locator:
    """The input labelled ``label`` (labels of required fields end in a '*')."""
    return page.get_by_label(re.compile(rf"^{re.escape(label)}\b"))


def field_container(page: Page, name: str) -> Locator:
    return page.locator("div.field", has=page.locator(f"[name='{name}']"))


def field_errors(page: Page, name: str) -> Locator:
    """The error texts shown beside the form field ``name``."""
    return page.locator("div.field.has-error", has=page.locator(f"[name='{name}']")).locator(
        "p.error-text"
    )


def prop(page: Page, term: str) -> Locator:
    """The value beside ``term`` in the detail page's property list."""
    return page.locator("dl.props dt", has_text=re.compile(rf"^{re.escape(term)}$")).locator(
        "xpath=following-sibling::dd[1]"
    )


def sign_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    field(page, "Username").fill(username)
    field(page, "Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.locator(".account .user")).to_contain_text(username)


def fill_connection_form(
    page: Page,
    *,
    name: str,
    server_url: str,
    auth_type: str = "None",
    token: str = "",
    headers: str = "",
    instructions: str = "",
) -> None:
    field(page, "Name").fill(name)
    field(page, "Server URL").fill(server_url)
    field(page, "Authentication").select_option(label=auth_type)
    if auth_type == "Bearer token":  # the token field is shown only for bearer authentication
        field(page, "Bearer token").fill(token)
    field(page, "Extra headers").fill(headers)
    field(page, "Instructions").fill(instructions)


def page_html(page: Page) -> str:
    """The page as served (reloaded, so the raw response body) and as rendered."""
    response = page.reload()
    assert response is not None and response.ok
    return response.text() + page.content()


def make_connection(**fields: Any) -> Connection:
    return cast(Connection, ConnectionFactory(**fields))


def connections_table_rows(page: Page) -> Locator:
    return page.locator("#connections-table tbody tr")


# --- scenarios ------------------------------------------------------------------------


def test_admin_creates_a_bearer_connection_and_never_sees_the_token_again(
    page: Page, admin: Person
) -> None:
    sign_in(page, "alice")

    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="Connections", exact=True
    ).click()
    expect(page).to_have_url(re.compile(r"/connections/$"))
    expect(page.get_by_role("heading", name="Connections", exact=True)).to_be_visible()
    expect(page.get_by_text("No connections yet.")).to_be_visible()
    expect(page.locator("#connections-table")).to_have_count(0)

    page.get_by_role("link", name="Add connection").click()
    expect(page).to_have_url(re.compile(r"/connections/new$"))
    expect(page.get_by_role("heading", name="Add a connection")).to_be_visible()
    fill_connection_form(
        page,
        name="Docs search",
        server_url="https://docs.example.com/mcp",
        auth_type="Bearer token",
        token=TOKEN,
        headers="X-Tenant: acme",
        instructions="Search the product documentation.",
    )
    page.get_by_role("button", name="Create connection").click()

    connection = Connection.objects.get()
    expect(page).to_have_url(re.compile(rf"/connections/{connection.pk}$"))
    expect(page.get_by_role("status")).to_contain_text("Connection “Docs search” created.")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Docs search")
    expect(prop(page, "Server URL")).to_have_text("https://docs.example.com/mcp")
    expect(prop(page, "Transport")).to_have_text("Streamable HTTP")
    expect(prop(page, "Authentication")).to_have_text("Bearer token")
    expect(prop(page, "Bearer token")).to_have_text("set")
    expect(prop(page, "Extra headers")).to_have_text("set")
    expect(prop(page, "Status")).to_have_text("Unknown")
    expect(prop(page, "Last health check")).to_have_text("never")
    expect(prop(page, "ID")).to_have_text(str(connection.pk))
    expect(page.locator("pre.instructions")).to_have_text("Search the product documentation.")
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 0

    # Stored as given, but shown nowhere: neither on the detail page nor in the edit form.
    assert connection.token == TOKEN
    assert connection.headers == {"X-Tenant": "acme"}
    assert connection.auth_type == AuthType.BEARER
    assert TOKEN not in page_html(page)

    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name="Edit Docs search")).to_be_visible()
    expect(field(page, "Name")).to_have_value("Docs search")
    expect(field(page, "Bearer token")).to_have_value("")
    expect(field(page, "Extra headers")).to_have_value("")
    expect(field_container(page, "token")).to_contain_text(
        "A token is stored; leave blank to keep it."
    )
    assert TOKEN not in page_html(page)

    page.get_by_role("link", name="Connections", exact=True).first.click()
    rows = connections_table_rows(page)
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td")).to_have_text(
        [
            "Docs search",
            "https://docs.example.com/mcp",
            "Streamable HTTP",
            "Bearer token",
            "Unknown",
            "never",
        ]
    )
    assert TOKEN not in page_html(page)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    page.goto("/connections/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/connections/$"))


def test_validation_errors_are_shown_beside_their_fields(page: Page, admin: Person) -> None:
    sign_in(page, "alice")
    page.goto("/connections/new")
    fill_connection_form(page, name="Broken", server_url="ftp://x", auth_type="Bearer token")
    page.get_by_role("button", name="Create connection").click()

    expect(page).to_have_url(re.compile(r"/connections/new$"))
    expect(page.get_by_role("alert")).to_contain_text("Please correct the fields marked below.")
    expect(field_errors(page, "server_url")).to_have_count(1)
    expect(field_errors(page, "server_url")).to_contain_text("http:// or https://")
    expect(field_errors(page, "token")).to_have_count(1)
    expect(field_errors(page, "token")).to_contain_text("needs a token")
    expect(page.locator("div.field.has-error")).to_have_count(2)
    # What was typed is kept, so the admin only fixes the marked fields.
    expect(field(page, "Name")).to_have_value("Broken")
    expect(field(page, "Server URL")).to_have_value("ftp://x")
    expect(field(page, "Authentication")).to_have_value(AuthType.BEARER)
    assert not Connection.objects.exists()

    page.goto("/connections/")
    expect(page.get_by_text("No connections yet.")).to_be_visible()


def test_a_duplicate_name_is_refused_beside_the_name(
    page: Page, admin: Person, org: Organization
) -> None:
    make_connection(organization=org, name="Docs search")
    sign_in(page, "alice")
    page.goto("/connections/new")
    fill_connection_form(page, name="docs SEARCH", server_url="https://other.example.com/mcp")
    page.get_by_role("button", name="Create connection").click()

    expect(field_errors(page, "name")).to_contain_text("already exists")
    expect(page.locator("div.field.has-error")).to_have_count(1)
    assert Connection.objects.filter(organization=org).count() == 1


def test_edit_keeps_the_token_when_left_blank_and_delete_removes_the_connection(
    page: Page, admin: Person, org: Organization
) -> None:
    connection = make_connection(
        organization=org,
        name="Docs search",
        server_url="https://docs.example.com/mcp",
        auth_type=AuthType.BEARER,
        credential={"token": TOKEN, "headers": {"X-Tenant": "acme"}},
    )
    sign_in(page, "alice")
    page.goto("/connections/")
    page.get_by_role("link", name="Docs search").click()
    expect(prop(page, "Bearer token")).to_have_text("set")

    page.get_by_role("link", name="Edit").click()
    expect(page).to_have_url(re.compile(rf"/connections/{connection.pk}/edit$"))
    field(page, "Name").fill("Docs search v2")
    expect(field(page, "Bearer token")).to_have_value("")
    page.get_by_role("button", name="Save changes").click()

    expect(page).to_have_url(re.compile(rf"/connections/{connection.pk}$"))
    expect(page.get_by_role("status")).to_contain_text("Connection “Docs search v2” saved.")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Docs search v2")
    expect(prop(page, "Bearer token")).to_have_text("set")
    expect(prop(page, "Extra headers")).to_have_text("set")
    connection.refresh_from_db()
    assert connection.name == "Docs search v2"
    assert connection.token == TOKEN
    assert connection.headers == {"X-Tenant": "acme"}

    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete Docs search v2?")).to_be_visible()
    page.get_by_role("button", name="Delete connection").click()

    expect(page).to_have_url(re.compile(r"/connections/$"))
    expect(page.get_by_role("status")).to_contain_text("Connection “Docs search v2” deleted.")
    expect(page.get_by_role("link", name="Docs search v2")).to_have_count(0)
    expect(page.get_by_text("No connections yet.")).to_be_visible()
    assert not Connection.objects.filter(pk=connection.pk).exists()


def test_a_member_reads_but_cannot_change_and_other_organisations_are_invisible(
    page: Page, member: Person, org: Organization, other_org: Organization
) -> None:
    ours = make_connection(organization=org, name="Docs search")
    theirs = make_connection(organization=other_org, name="Globex secrets")
    sign_in(page, "bob")

    page.goto("/connections/")
    rows = connections_table_rows(page)
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Docs search")
    expect(page.get_by_text("Globex secrets")).to_have_count(0)
    expect(page.get_by_role("link", name="Add connection")).to_have_count(0)

    page.get_by_role("link", name="Docs search").click()
    expect(prop(page, "Server URL")).to_have_text(ours.server_url)
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    expect(page.get_by_role("link", name="Delete")).to_have_count(0)

    for path in (
        "/connections/new",
        f"/connections/{ours.pk}/edit",
        f"/connections/{ours.pk}/delete",
    ):
        response = page.goto(path)
        assert response is not None and response.status == 403, path
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        expect(page.get_by_text("Only an organisation admin can do this.")).to_be_visible()
    assert Connection.objects.get(pk=ours.pk).name == "Docs search"

    response = page.goto(f"/connections/{theirs.pk}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.get_by_text("Globex secrets")).to_have_count(0)
