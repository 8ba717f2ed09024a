"""The admin UI's endpoint pages in headless Chromium against a live server: toggles
flip without a reload and the REST API sees the change.

Set up like ``test_connection_pages.py``: Playwright's sync API keeps an asyncio
event loop running in this thread, so ORM calls made here need
``DJANGO_ALLOW_ASYNC_UNSAFE`` while the browser is up. Toggles are made through
the pages (the live server's thread), never by calling services from this thread.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from connections.models import Connection
from endpoints.models import Endpoint
from oauth.models import Organization
from tests.conftest import Person
from tests.endpoints.conftest import DOCS_TOOLS, ORDERS_TOOLS, store, tool
from tests.factories import PASSWORD, ConnectionFactory

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/endpoint-detail.png")
REVIEW_SCREENSHOT = Path("/tmp/endpoint-review.png")


# --- fixtures -------------------------------------------------------------------------


def make_connection(organization: Organization, name: str, slug: str, tools) -> Connection:
    connection = cast(
        Connection, ConnectionFactory(organization=organization, name=name, slug=slug)
    )
    store(connection, tools=tools)
    return connection


@pytest.fixture
def servers(org: Organization) -> tuple[Connection, Connection]:
    return (
        make_connection(org, "Acme orders", "acme-orders", ORDERS_TOOLS),
        make_connection(org, "Docs", "docs", DOCS_TOOLS),
    )


# --- helpers --------------------------------------------------------------------------


def sign_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label(re.compile(r"^Username\b")).fill(username)
    page.get_by_label(re.compile(r"^Password\b")).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def switch(page: Page, public_name: str) -> Locator:
    return page.get_by_role("switch", name=public_name, exact=True)


def mark_page(page: Page) -> None:
    """Tag the document, so a test can prove later that no reload happened."""
    page.evaluate("window.__noReload = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__noReload === true"), "the page was reloaded"


def api_tools(person: Person, endpoint: Endpoint) -> dict[str, dict[str, Any]]:
    response = person.api().get(f"/api/mcp-endpoints/{endpoint.pk}/tools")
    assert response.status_code == 200
    return {item["name"]: item for item in response.json()["tools"]}


def enabled_in_api(person: Person, endpoint: Endpoint) -> list[str]:
    return sorted(name for name, item in api_tools(person, endpoint).items() if item["enabled"])


def create_endpoint(page: Page, name: str, servers: list[str]) -> Endpoint:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Endpoints").click()
    expect(page).to_have_url(re.compile(r"/endpoints/$"))
    expect(page.get_by_text("No endpoints yet.")).to_be_visible()
    page.get_by_role("link", name="Add endpoint").click()
    page.get_by_label(re.compile(r"^Name\b")).fill(name)
    for server in servers:
        page.get_by_role("checkbox", name=f"{server} (").check()
    page.get_by_role("button", name="Create endpoint").click()
    endpoint = Endpoint.objects.get(name=name)
    expect(page).to_have_url(re.compile(rf"/endpoints/{endpoint.pk}$"))
    expect(page.get_by_role("status")).to_contain_text(f"Endpoint “{name}” created.")
    return endpoint


# --- scenarios ------------------------------------------------------------------------


def test_an_admin_creates_an_endpoint_and_each_toggle_click_reaches_the_api(
    page: Page, admin: Person, servers, live_server: Any
) -> None:
    sign_in(page, "alice")
    endpoint = create_endpoint(page, "Sales", ["Acme orders", "Docs"])

    url_box = page.locator("#endpoint-url")
    expect(url_box).to_have_text(endpoint.url)
    assert endpoint.url.endswith("/mcp/sales")
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#copy-url")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == endpoint.url

    # Everything starts disabled, in the page and in the API.
    switches = page.get_by_role("switch")
    expect(switches).to_have_count(5)
    for index in range(5):
        expect(switches.nth(index)).to_have_attribute("aria-checked", "false")
    expect(page.locator("#count-all-tools")).to_have_text("0 of 5 tools enabled")
    assert enabled_in_api(admin, endpoint) == []

    mark_page(page)
    switch(page, "acme-orders__search").click()
    expect(switch(page, "acme-orders__search")).to_have_attribute("aria-checked", "true")
    expect(page.locator(f"#count-{servers[0].pk}-tools")).to_have_text("1 of 3 tools enabled")
    expect(page.locator("#count-all-tools")).to_have_text("1 of 5 tools enabled")
    assert enabled_in_api(admin, endpoint) == ["acme-orders__search"]

    switch(page, "docs__fetch").click()
    expect(switch(page, "docs__fetch")).to_have_attribute("aria-checked", "true")
    expect(page.locator("#count-all-tools")).to_have_text("2 of 5 tools enabled")
    assert enabled_in_api(admin, endpoint) == ["acme-orders__search", "docs__fetch"]

    switch(page, "acme-orders__search").click()
    expect(switch(page, "acme-orders__search")).to_have_attribute("aria-checked", "false")
    expect(page.locator(f"#count-{servers[0].pk}-tools")).to_have_text("0 of 3 tools enabled")
    assert enabled_in_api(admin, endpoint) == ["docs__fetch"]
    assert_not_reloaded(page)

    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 0
    page.reload()
    expect(switch(page, "docs__fetch")).to_have_attribute("aria-checked", "true")
    expect(switch(page, "acme-orders__search")).to_have_attribute("aria-checked", "false")


def test_the_filter_and_enable_all_shown_act_on_the_filtered_set(
    page: Page, admin: Person, servers
) -> None:
    sign_in(page, "alice")
    endpoint = create_endpoint(page, "Sales", ["Acme orders", "Docs"])
    mark_page(page)

    page.get_by_role("searchbox", name="Filter").fill("search")
    expect(page.get_by_role("switch")).to_have_count(2)
    expect(page.locator("#filter-summary")).to_have_text("2 shown, matching “search”.")
    page.get_by_role("button", name="Enable all shown (2)").click()

    expect(page.locator("#catalog-notice")).to_have_text("Enabled 2 entries.")
    expect(switch(page, "acme-orders__search")).to_have_attribute("aria-checked", "true")
    expect(switch(page, "docs__search")).to_have_attribute("aria-checked", "true")
    expect(page.locator("#count-all-tools")).to_have_text("2 of 5 tools enabled")
    assert enabled_in_api(admin, endpoint) == ["acme-orders__search", "docs__search"]

    page.get_by_role("searchbox", name="Filter").fill("order")
    expect(page.get_by_role("switch")).to_have_count(3)  # matches names and descriptions
    page.get_by_role("button", name="Disable all shown").click()
    expect(page.locator("#catalog-notice")).to_have_text("Disabled 1 entry.")
    assert enabled_in_api(admin, endpoint) == ["docs__search"]

    page.get_by_role("searchbox", name="Filter").fill("")
    expect(page.get_by_role("switch")).to_have_count(5)
    expect(page.locator("#count-all-tools")).to_have_text("1 of 5 tools enabled")
    assert_not_reloaded(page)


def test_a_tool_changed_upstream_is_reviewed_side_by_side_and_accepted(
    page: Page, admin: Person, servers
) -> None:
    orders, _ = servers
    sign_in(page, "alice")
    endpoint = create_endpoint(page, "Sales", ["Acme orders"])
    switch(page, "acme-orders__search").click()
    expect(switch(page, "acme-orders__search")).to_have_attribute("aria-checked", "true")

    store(
        orders,
        tools=[*ORDERS_TOOLS[:2], tool("search", "Search orders by customer.", customer="string")],
    )
    page.reload()

    row = page.locator("tr", has=page.get_by_text("acme-orders__search", exact=True))
    expect(row).to_contain_text("changed upstream — review")
    expect(switch(page, "acme-orders__search")).to_have_attribute("aria-checked", "false")
    expect(switch(page, "acme-orders__search")).to_have_attribute("aria-disabled", "true")
    assert api_tools(admin, endpoint)["acme-orders__search"]["state"] == "changed"

    row.get_by_role("link", name="Review").click()
    expect(page.get_by_role("heading", name="Changed upstream — review")).to_be_visible()
    expect(page.locator("#approved-definition")).to_contain_text("Search orders.")
    expect(page.locator("#approved-definition")).not_to_contain_text("customer")
    expect(page.locator("#current-definition")).to_contain_text("Search orders by customer.")
    expect(page.locator("#current-definition .line.add").first).to_be_visible()
    page.screenshot(path=str(REVIEW_SCREENSHOT), full_page=True)
    page.get_by_role("button", name="Accept and enable").click()

    expect(page.get_by_role("status")).to_contain_text("Accepted the new definition")
    item = api_tools(admin, endpoint)["acme-orders__search"]
    assert (item["enabled"], item["state"], item["description"]) == (
        True,
        "ok",
        "Search orders by customer.",
    )


def test_an_alias_is_set_on_the_entry_page_and_an_invalid_one_is_refused(
    page: Page, admin: Person, servers
) -> None:
    sign_in(page, "alice")
    endpoint = create_endpoint(page, "Sales", ["Acme orders", "Docs"])
    row = page.locator("tr", has=page.get_by_text("docs__search", exact=True))
    row.get_by_role("link", name="Edit").click()

    page.get_by_label(re.compile(r"^Alias\b")).fill("acme-orders__search")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("p.error-text")).to_contain_text("is already the name of the tool 'search'")

    page.get_by_label(re.compile(r"^Alias\b")).fill("docs_search")
    page.get_by_label(re.compile(r"^Description shown to clients\b")).fill("Search the handbook.")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#public-name")).to_have_text("docs_search")
    item = api_tools(admin, endpoint)["docs_search"]
    assert (item["alias"], item["description"], item["enabled"]) == (
        "docs_search",
        "Search the handbook.",
        False,
    )


def test_a_member_sees_the_toggles_read_only_and_delete_needs_a_confirmation(
    page: Page, admin: Person, member: Person, servers, browser: Browser, live_server: Any
) -> None:
    sign_in(page, "alice")
    endpoint = create_endpoint(page, "Sales", ["Acme orders"])
    switch(page, "acme-orders__get_order_status").click()
    expect(switch(page, "acme-orders__get_order_status")).to_have_attribute("aria-checked", "true")

    other = browser.new_context(base_url=live_server.url)
    member_page = other.new_page()
    sign_in(member_page, "bob")
    member_page.goto(f"/endpoints/{endpoint.pk}")
    expect(member_page.get_by_role("switch")).to_have_count(3)
    expect(switch(member_page, "acme-orders__get_order_status")).to_have_attribute(
        "aria-disabled", "true"
    )
    expect(member_page.get_by_role("button", name=re.compile("Enable all shown"))).to_have_count(0)
    expect(member_page.get_by_role("link", name="Delete")).to_have_count(0)
    other.close()

    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete Sales?")).to_be_visible()
    assert Endpoint.objects.filter(pk=endpoint.pk).exists()
    page.get_by_role("button", name="Delete endpoint").click()
    expect(page).to_have_url(re.compile(r"/endpoints/$"))
    expect(page.get_by_role("status")).to_contain_text("Endpoint “Sales” deleted.")
    assert not Endpoint.objects.filter(pk=endpoint.pk).exists()
    assert admin.api().get(f"/api/mcp-endpoints/{endpoint.pk}").status_code == 404
