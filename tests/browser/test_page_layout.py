"""Every main page at a desktop width (1440 px) and a phone width (390 px): nothing wider
than the screen, no console error or failed request (the favicon included), a label on
every input, the skip link first in the tab order; and the dark mode that follows the
system.

With ``UPDATE_SCREENSHOTS=1`` the pages are also saved to docs/screenshots/ for the README.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Response, expect

from connections.models import Connection
from connections.services import connection_check_health, connection_create
from endpoints.models import Endpoint
from endpoints.services import endpoint_create, endpoint_entries_set_enabled
from tests.audit.factories_audit import make_records
from tests.browser.test_my_connections import _authorize_path
from tests.conftest import Person
from tests.endpoints.conftest import DOCS_TOOLS, ORDERS_TOOLS, store, tool
from tests.factories import PASSWORD

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WIDTHS = {"desktop": (1440, 900), "phone": (390, 844)}
# The pages the README shows (the others are checked, not photographed).
PHOTOGRAPHED = {
    "dashboard",
    "connections",
    "connection-detail",
    "connection-form",
    "my-connections",
    "endpoints",
    "endpoint-detail",
    "activity",
    "api-tokens",
    "consent",
}
LONG_URL = (
    "https://an-upstream-with-a-rather-long-host-name.internal.example.com/"
    "tenants/acme-corporation/services/model-context-protocol/mcp?region=eu-west-1"
)

# Every input, select and textarea without a label, an aria-label or aria-labelledby.
UNLABELLED_JS = """() => Array.from(document.querySelectorAll(
    'input:not([type=hidden]), select, textarea'
)).filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
    && !el.getAttribute('aria-labelledby')).map(el => el.outerHTML.slice(0, 120))"""


@dataclass
class Site:
    """The data the pages show, and the paths of the pages."""

    connection: Connection
    endpoint: Endpoint
    consent_path: str
    paths: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def site(org, admin: Person, settings, live_server) -> Site:
    settings.GATEWAY_PUBLIC_URL = live_server.url
    orders = connection_create(
        organization=org,
        name="Acme orders",
        slug="acme-orders",
        server_url=LONG_URL,
        instructions="Use get_order_status before promising a delivery date.",
    )
    store(
        orders,
        tools=[
            *ORDERS_TOOLS,
            tool(
                "create_refund_for_a_customer_order_with_a_very_long_name",
                "Refund an order. " * 20,
                order_id="string",
            ),
        ],
        resources=[{"uri": "catalog://products", "name": "products"}],
    )
    docs = connection_create(
        organization=org, name="Docs", slug="docs", server_url="https://docs.example.com/mcp"
    )
    store(docs, tools=DOCS_TOOLS, prompts=[{"name": "summarise", "description": "Summarise."}])
    # A personal-credential server nobody has connected yet, checked once.
    tickets = connection_create(
        organization=org,
        name="Tickets",
        slug="tickets",
        server_url="https://tickets.example.com/mcp",
        auth_type="bearer",
        credential_mode="personal",
    )
    connection_check_health(connection=tickets)
    endpoint = endpoint_create(
        organization=org,
        name="Sales",
        slug="sales",
        description="Orders and documentation for the sales team.",
        connection_ids=[orders.pk, docs.pk, tickets.pk],
    )
    endpoint_entries_set_enabled(
        endpoint=endpoint,
        entry_ids=list(orders.catalog.filter(kind="tool").values_list("pk", flat=True)[:2]),
        enabled=True,
    )
    make_records(org, 30, user_id=admin.user.pk, username="alice", client_name="Claude Code")
    make_records(
        org,
        1,
        user_id=admin.user.pk,
        username="alice",
        name="acme-orders__create_refund_for_a_customer_order_with_a_very_long_name",
        status="refused",
        refusal="not_enabled",
        start=timezone.now(),
    )
    consent = _authorize_path(live_server.url, f"{live_server.url}/mcp/sales")
    long_tool = orders.catalog.get(key="create_refund_for_a_customer_order_with_a_very_long_name")
    return Site(
        connection=orders,
        endpoint=endpoint,
        consent_path=consent,
        paths={
            "dashboard": "/",
            "connections": "/connections/",
            "connection-detail": f"/connections/{orders.pk}",
            "connection-form": "/connections/new",
            "my-connections": "/me/connections",
            "endpoints": "/endpoints/",
            "endpoint-detail": f"/endpoints/{endpoint.pk}",
            "endpoint-form": f"/endpoints/{endpoint.pk}/edit",
            "endpoint-entry": f"/endpoints/{endpoint.pk}/entries/{long_tool.pk}",
            "activity": "/activity/",
            "api-tokens": "/settings/api-tokens",
            "consent": consent,
        },
    )


@dataclass
class Watcher:
    """Console errors, uncaught exceptions and failed requests of one page."""

    problems: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def response(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")


def signed_in_context(
    browser: Browser, live_server: Any, width: str, *, signed_in: bool = True, **options: Any
) -> BrowserContext:
    w, h = WIDTHS[width]
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": w, "height": h}, **options
    )
    context.set_default_timeout(10_000)
    if not signed_in:
        return context
    page = context.new_page()
    page.goto("/accounts/login/")
    page.locator("#id_username").fill("alice")
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".account .user")).to_contain_text("alice")
    page.close()
    return context


def visit(context: BrowserContext, path: str) -> tuple[Page, Watcher]:
    page = context.new_page()
    watcher = Watcher()
    page.on("console", watcher.console)
    page.on("pageerror", lambda error: watcher.problems.append(f"exception: {error}"))
    page.on("response", watcher.response)
    response = page.goto(path)
    assert response is not None and response.status == 200, path
    page.wait_for_load_state("networkidle")
    return page, watcher


def screenshot(page: Page, name: str) -> None:
    page_name = re.sub(r"-(1440|390)(-dark)?$", "", name)
    if os.environ.get("UPDATE_SCREENSHOTS") != "1" or page_name not in PHOTOGRAPHED:
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 1440
    limit = 1100 if width > 800 else 1500  # the top of long pages is enough for the README
    height = min(page.evaluate("document.documentElement.scrollHeight"), limit)
    page.screenshot(
        path=str(SCREENSHOTS / f"{name}.png"),
        full_page=True,
        clip={"x": 0, "y": 0, "width": width, "height": height},
    )


@pytest.fixture
def contexts(browser: Browser, live_server: Any) -> Iterator[Callable[..., BrowserContext]]:
    opened: list[BrowserContext] = []

    def open_context(width: str, **options: Any) -> BrowserContext:
        opened.append(signed_in_context(browser, live_server, width, **options))
        return opened[-1]

    yield open_context
    for context in opened:
        context.close()


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_every_main_page_fits_the_screen_with_labels_and_no_errors(
    site: Site, contexts: Callable[..., BrowserContext], width: str
) -> None:
    context = contexts(width)
    anonymous = contexts(width, signed_in=False)
    pages = [(name, context, path) for name, path in site.paths.items()]
    for name, on, path in [("sign-in", anonymous, "/accounts/login/"), *pages]:
        page, watcher = visit(on, path)

        scroll_width, inner_width = page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert scroll_width <= inner_width, f"{name} is {scroll_width} px wide at {inner_width}"
        assert page.evaluate(UNLABELLED_JS) == [], name
        assert watcher.problems == [], name
        if page.locator("[autofocus]").count():  # the sign-in form starts in its first field
            expect(page.locator("[autofocus]")).to_be_focused()
            screenshot(page, f"{name}-{WIDTHS[width][0]}")
            page.close()
            continue
        # The first Tab reaches the skip link, which leads past the navigation.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent.trim()") == (
            "Skip to main content"
        ), name
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main", name
        screenshot(page, f"{name}-{WIDTHS[width][0]}")
        page.close()


def test_the_phone_navigation_collapses_behind_a_menu_button(
    site: Site, contexts: Callable[..., BrowserContext]
) -> None:
    page, watcher = visit(contexts("phone"), "/")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav).to_be_hidden()

    page.get_by_role("button", name="Menu").click()

    expect(nav.get_by_role("link", name="Endpoints")).to_be_visible()
    nav.get_by_role("link", name="Endpoints").click()
    expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()
    assert watcher.problems == []


def test_wide_tables_scroll_in_their_box_instead_of_squeezing_the_text(
    site: Site, contexts: Callable[..., BrowserContext]
) -> None:
    page, _ = visit(contexts("phone"), site.paths["endpoint-detail"])

    table = page.locator("table.entries").first
    box = table.bounding_box()
    assert box is not None
    # Rows stay a line or two high rather than one character per line.
    row = page.locator("tr", has=page.get_by_text("acme-orders__check_inventory")).first
    row_box = row.bounding_box()
    assert row_box is not None and row_box["height"] < 120
    scroller = table.locator("xpath=..")
    assert scroller.evaluate("el => el.classList.contains('table-responsive')")
    assert scroller.evaluate("el => el.scrollWidth > el.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_the_dark_mode_follows_the_system(
    site: Site, contexts: Callable[..., BrowserContext]
) -> None:
    page, watcher = visit(contexts("desktop", color_scheme="dark"), site.paths["endpoint-detail"])

    assert page.evaluate("document.documentElement.dataset.bsTheme") == "dark"
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(v) for v in background[background.index("(") + 1 : -1].split(",")[:3])
    assert red + green + blue < 3 * 64, background
    assert watcher.problems == []
    screenshot(page, "endpoint-detail-1440-dark")

    light, _ = visit(contexts("desktop", color_scheme="light"), site.paths["endpoint-detail"])
    assert light.evaluate("document.documentElement.dataset.bsTheme") == "light"


def test_set_up_states_wait_for_a_credential_rather_than_fail(
    site: Site, contexts: Callable[..., BrowserContext]
) -> None:
    page, _ = visit(contexts("desktop"), "/connections/")

    row = page.locator("#connections-table tbody tr", has=page.get_by_text("Tickets"))
    badge = row.locator(".badge")
    expect(badge).to_have_text("waiting for a user's credential")
    expect(badge).to_have_attribute("data-status", "waiting")
    expect(page.locator("#connections-table .badge.status-error")).to_have_count(0)
