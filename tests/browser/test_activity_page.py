"""The Activity page in headless Chromium: filters, paging, the detail view, and what a
member sees (their own calls only)."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from tests.audit.factories_audit import make_records
from tests.factories import PASSWORD

pytestmark = pytest.mark.browser


def sign_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label(re.compile(r"^Username\b")).fill(username)
    page.get_by_label(re.compile(r"^Password\b")).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_an_auditor_filters_pages_and_opens_a_record(page: Page, auditor, member, admin):
    org = admin.organization
    make_records(org, 60, user_id=admin.user.pk, username="alice", client_name="Claude")
    make_records(
        org,
        1,
        user_id=member.user.pk,
        username="bob",
        name="paged__whoami",
        status="refused",
        refusal="not_enabled",
        error_message="Unknown tool: paged__whoami",
        arguments='{"ticket":{"id":42}}',
        start=timezone.now(),
    )
    sign_in(page, "carol")

    page.get_by_role("link", name="Activity").click()
    expect(page.get_by_role("heading", name="Activity")).to_be_visible()
    rows = page.locator("#activity-table tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.first).to_contain_text("paged__whoami")  # newest first
    page.get_by_role("link", name="Older").click()
    expect(rows).to_have_count(11)

    page.goto("/activity/")
    page.get_by_label("Search").fill("unknown tool")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Refused: not_enabled")
    page.get_by_label("Status").select_option("success")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No activity matches.")).to_be_visible()

    page.get_by_role("link", name="Clear").click()
    page.get_by_label("User").select_option(label="bob")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    rows.first.get_by_role("link").click()
    expect(page.locator("#record-arguments")).to_have_text('{\n  "ticket": {\n    "id": 42\n  }\n}')
    expect(page.locator("#record-facts")).to_contain_text("Unknown tool: paged__whoami")


def test_a_member_sees_only_their_own_calls(page: Page, member, admin):
    make_records(admin.organization, 3, user_id=admin.user.pk, name="alice__tool")
    make_records(admin.organization, 2, user_id=member.user.pk, name="bob__tool")
    sign_in(page, "bob")

    page.goto("/activity/")
    rows = page.locator("#activity-table tbody tr")
    expect(rows).to_have_count(2)
    expect(page.get_by_text("alice__tool")).to_have_count(0)
    expect(page.get_by_label("User")).to_have_count(0)
