"""Copy buttons on a plain-http host, the API token page's one-time token, forms that
show only the fields that apply (and all of them without script), and the endpoint's
client set-up."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from connections.models import Connection
from connections.services import connection_create
from endpoints.services import endpoint_create
from oauth.models import ApiToken
from tests.browser.test_connection_pages import field, sign_in
from tests.conftest import Person

pytestmark = pytest.mark.browser

# What a browser offers on http://<private address>: no navigator.clipboard at all.
NO_CLIPBOARD = "Object.defineProperty(Navigator.prototype, 'clipboard', {get: () => undefined});"
NO_EXEC_COPY = "document.execCommand = () => false;"


def create_token(page: Page, name: str) -> str:
    page.goto("/settings/api-tokens")
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token-value")).to_be_visible()
    return page.locator("#new-token-value").inner_text()


def clipboard_of(context: BrowserContext) -> str:
    """The clipboard as another page of the same browser reads it."""
    reader = context.new_page()
    reader.goto("/accounts/login/")
    text = reader.evaluate("navigator.clipboard.readText()")
    reader.close()
    return str(text)


def test_a_new_token_is_shown_once_with_a_copy_button_and_a_refresh_creates_none(
    page: Page, admin: Person
) -> None:
    sign_in(page, "alice")
    before = ApiToken.objects.count()

    raw = create_token(page, "deploy script")

    assert raw.startswith("gwt_")
    expect(page).to_have_url(re.compile(r"/settings/api-tokens$"))  # redirected after the POST
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#copy-token")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == raw

    page.reload()
    expect(page.locator("#new-token-value")).to_have_count(0)
    assert ApiToken.objects.count() == before + 1


def test_copy_works_on_a_plain_http_host_without_the_clipboard_api(
    browser: Browser, live_server: Any, admin: Person
) -> None:
    context = browser.new_context(base_url=live_server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    sign_in(page, "alice")
    raw = create_token(page, "plain http")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.add_init_script(NO_CLIPBOARD)
    page.evaluate(NO_CLIPBOARD)
    assert page.evaluate("navigator.clipboard === undefined")

    page.locator("#copy-token").click()

    expect(page.locator("#copy-token")).to_have_text("Copied")
    assert clipboard_of(context) == raw
    assert errors == []
    context.close()


def test_where_no_copy_works_the_text_is_selected_and_the_shortcut_named(
    browser: Browser, live_server: Any, admin: Person
) -> None:
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    sign_in(page, "alice")
    raw = create_token(page, "no copy at all")
    page.evaluate(NO_CLIPBOARD + NO_EXEC_COPY)

    page.locator("#copy-token").click()

    expect(page.locator("#copy-token")).to_have_text(re.compile(r"^Press (Ctrl\+C|⌘C)$"))
    assert page.evaluate("window.getSelection().toString()") == raw
    context.close()


def test_the_connection_form_shows_only_the_fields_that_apply(
    page: Page, admin: Person, settings
) -> None:
    settings.GATEWAY_ALLOW_STDIO = True
    sign_in(page, "alice")
    page.goto("/connections/new")
    token = page.locator("#token-fields")
    credentials = field(page, "Credentials")

    expect(token).to_be_hidden()  # authentication None
    expect(credentials).to_be_hidden()
    expect(page.locator("#oauth-fields")).to_be_hidden()

    field(page, "Authentication").select_option(label="Bearer token")
    expect(token).to_be_visible()
    expect(credentials).to_be_visible()

    credentials.select_option(label="Personal: each user brings their own")
    expect(token).to_be_hidden()  # each user brings their own token

    field(page, "Authentication").select_option(label="OAuth (sign in to the server)")
    expect(page.locator("#oauth-fields")).to_be_visible()
    expect(token).to_be_hidden()

    field(page, "Transport").select_option(value="stdio")
    expect(page.locator("#http-fields")).to_be_hidden()
    expect(page.locator("#stdio-fields")).to_be_visible()


def test_what_was_typed_in_a_field_that_no_longer_applies_is_not_sent(
    page: Page, admin: Person
) -> None:
    sign_in(page, "alice")
    page.goto("/connections/new")
    field(page, "Name").fill("Docs search")
    field(page, "Server URL").fill("https://docs.example.com/mcp")
    field(page, "Authentication").select_option(label="Bearer token")
    field(page, "Bearer token").fill("sk-typed-then-abandoned")

    field(page, "Authentication").select_option(label="None")
    page.get_by_role("button", name="Create connection").click()

    expect(page.get_by_role("status")).to_contain_text("Connection “Docs search” created.")
    connection = Connection.objects.get(name="Docs search")
    assert connection.auth_type == "none" and connection.token is None


def test_the_endpoint_form_shows_chosen_members_only_for_that_access(
    page: Page, admin: Person, member: Person
) -> None:
    sign_in(page, "alice")
    page.goto("/endpoints/new")
    members = page.locator("#members-field")

    page.get_by_role("radio", name=re.compile("^Everyone in the organisation")).check()
    expect(members).to_be_hidden()
    page.get_by_role("radio", name=re.compile("^Chosen members")).check()
    expect(members).to_be_visible()
    expect(members.get_by_role("checkbox", name="bob")).to_be_visible()


def test_without_script_every_field_stays_visible_and_the_form_still_works(
    browser: Browser, live_server: Any, admin: Person
) -> None:
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    page = context.new_page()
    sign_in(page, "alice")
    page.goto("/connections/new")

    for part in ("#token-fields", "#oauth-fields", "#http-fields", "#stdio-fields"):
        expect(page.locator(part)).to_be_visible()
    field(page, "Name").fill("Docs search")
    field(page, "Server URL").fill("https://docs.example.com/mcp")
    field(page, "Authentication").select_option(label="Bearer token")
    field(page, "Bearer token").fill("sk-test-123")
    page.get_by_role("button", name="Create connection").click()

    expect(page.get_by_role("status")).to_contain_text("Connection “Docs search” created.")
    context.close()


def test_each_endpoint_offers_ready_to_copy_client_set_up(page: Page, admin: Person, org) -> None:
    endpoint = endpoint_create(organization=org, name="Sales", slug="sales")
    sign_in(page, "alice")
    page.goto(f"/endpoints/{endpoint.pk}")
    setup = page.locator("#connect-a-client")
    url = endpoint.url

    setup.locator("summary", has_text="Claude Code").click()
    claude = page.locator("#snippet-claude-code-1")
    expect(claude).to_have_text(f"claude mcp add --transport http sales {url}")
    page.get_by_role("button", name="Copy the Claude Code command").click()
    assert page.evaluate("navigator.clipboard.readText()") == (
        f"claude mcp add --transport http sales {url}"
    )

    setup.locator("summary", has_text="Claude Desktop").click()
    desktop = json.loads(page.locator("#snippet-claude-desktop-1").inner_text())
    assert desktop == {"mcpServers": {"sales": {"command": "npx", "args": ["mcp-remote", url]}}}

    setup.locator("summary", has_text="VS Code").click()
    vscode = json.loads(page.locator("#snippet-vscode-1").inner_text())
    assert vscode == {"servers": {"sales": {"type": "http", "url": url}}}
    link = page.locator("#setup-vscode a.install-link").get_attribute("href") or ""
    assert link.startswith("vscode:mcp/install?")
    assert json.loads(unquote(link.split("?", 1)[1])) == {
        "name": "sales",
        "type": "http",
        "url": url,
    }

    setup.locator("summary", has_text="Cursor").click()
    link = page.locator("#setup-cursor a.install-link").get_attribute("href") or ""
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "cursor",
        "anysphere.cursor-deeplink",
        "/mcp/install",
    )
    query = parse_qs(parts.query)
    assert query["name"] == ["sales"]
    assert json.loads(base64.b64decode(query["config"][0])) == {"url": url}

    setup.locator("summary", has_text="ChatGPT").click()
    expect(page.locator("#snippet-chatgpt-1")).to_have_text(url)
    setup.locator("summary", has_text="MCP Inspector").click()
    expect(page.locator("#snippet-inspector-1")).to_contain_text(
        f"npx @modelcontextprotocol/inspector --cli {url} --transport http"
    )


def test_check_now_shows_it_is_working_and_cannot_be_clicked_twice(
    page: Page, admin: Person, org
) -> None:
    connection = connection_create(
        organization=org, name="Slow", slug="slow", server_url="https://slow.example.com/mcp"
    )
    sign_in(page, "alice")
    page.goto(f"/connections/{connection.pk}")
    # The page stays as it is while a silent upstream keeps the check waiting; here the
    # submission is stopped after the page's own handlers have seen it.
    page.evaluate("document.addEventListener('submit', event => event.preventDefault())")

    page.get_by_role("button", name="Check now").click()

    button = page.locator("#check-now")
    expect(button).to_be_disabled()
    expect(button).to_have_text("Checking…")
    expect(button).to_have_attribute("aria-busy", "true")
