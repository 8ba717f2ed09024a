"""The endpoint pages of the admin UI, through Django's test client."""

from __future__ import annotations

import re
import uuid

import pytest

from endpoints import selectors, services
from endpoints.models import Endpoint
from tests.endpoints.conftest import enable, store, tool
from tests.factories import ConnectionFactory

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin.user)
    return client


@pytest.fixture
def member_client(client, member):
    client.force_login(member.user)
    return client


def served_names(endpoint) -> list[str]:
    return sorted(t.name for t in selectors.endpoint_served(endpoint=endpoint).tools)


def row_id(endpoint, connection, key: str) -> int:
    return next(
        row.entry_id
        for row in selectors.endpoint_catalog_rows(endpoint=endpoint)
        if row.connection_id == connection.pk and row.key == key
    )


def test_pages_need_sign_in(client, db):
    response = client.get("/endpoints/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/endpoints/")


def test_the_list_shows_this_organisations_endpoints_with_counts(
    admin_client, endpoint, orders, other_org, django_assert_max_num_queries
):
    services.endpoint_create(organization=other_org, name="Globex secrets")
    enable(endpoint, orders, "search", "check_inventory")

    with django_assert_max_num_queries(10):
        response = admin_client.get("/endpoints/")

    html = response.content.decode()
    assert response.status_code == 200
    assert "Sales" in html and "Globex secrets" not in html
    assert endpoint.url in html
    cells = re.findall(r"<td>(\d+)</td>", html)
    assert cells == ["2", "2"]  # two servers, two tools enabled
    assert 'href="/endpoints/"' in html and 'aria-current="page">Endpoints' in html


def test_an_admin_creates_an_endpoint_from_the_form(admin_client, admin, orders, docs, member):
    response = admin_client.get("/endpoints/new")
    assert response.status_code == 200
    assert "Acme orders (acme-orders)" in response.content.decode()

    response = admin_client.post(
        "/endpoints/new",
        {
            "name": "Sales",
            "slug": "",
            "description": "For sales.",
            "connections": [str(orders.pk)],
            "prefix_names": "on",
            "access": "members",
            "members": [str(member.user.pk)],
        },
    )

    endpoint = Endpoint.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/endpoints/{endpoint.pk}"
    assert (endpoint.slug, endpoint.access, endpoint.prefix_names) == ("sales", "members", True)
    assert selectors.endpoint_connection_ids(endpoint=endpoint) == [orders.pk]
    assert [m.user_id for m in endpoint.members.all()] == [member.user.pk]


def test_form_errors_are_shown_beside_their_fields(admin_client, admin, other_org):
    services.endpoint_create(organization=other_org, name="X", slug="taken")

    response = admin_client.post(
        "/endpoints/new", {"name": "Sales", "slug": "taken", "access": "organization"}
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "The slug &#x27;taken&#x27; is already taken; choose another." in html
    assert "Please correct the fields marked below." in html
    assert not Endpoint.objects.filter(organization=admin.organization).exists()


def test_the_endpoint_page_shows_the_url_servers_toggles_and_counts(
    admin_client, endpoint, orders, docs, django_assert_max_num_queries
):
    enable(endpoint, orders, "search")

    with django_assert_max_num_queries(12):
        response = admin_client.get(f"/endpoints/{endpoint.pk}")

    html = response.content.decode()
    assert response.status_code == 200
    assert f'<code id="endpoint-url">{endpoint.url}</code>' in html
    assert 'id="copy-url"' in html
    assert html.count('role="switch"') == 9
    assert html.count('aria-checked="true"') == 1
    assert "1 of 3 tools enabled" in html  # Acme orders
    assert "0 of 2 tools enabled" in html  # Docs
    assert "<strong>1</strong> of 5 tools enabled" in html  # the whole endpoint
    assert "mcp-gateway://acme-orders/orders://{order_id}" in html


def test_one_htmx_toggle_flips_the_entry_and_answers_its_section_with_new_counts(
    admin_client, endpoint, orders
):
    entry_id = row_id(endpoint, orders, "search")

    response = admin_client.post(
        f"/endpoints/{endpoint.pk}/entries/{entry_id}/toggle", {"enabled": "1"}, **HTMX
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith(f'<section class="server" id="server-{orders.pk}"')
    assert "1 of 3 tools enabled" in html
    assert 'id="catalog-totals" class="totals" hx-swap-oob="true"' in html
    assert "<strong>1</strong> of 5 tools enabled" in html
    assert served_names(endpoint) == ["acme-orders__search"]

    response = admin_client.post(
        f"/endpoints/{endpoint.pk}/entries/{entry_id}/toggle", {"enabled": "0"}
    )
    assert response.status_code == 302  # without htmx: back to the page
    assert served_names(endpoint) == []


def test_the_filter_narrows_the_rows_and_enable_all_shown_acts_on_them_only(
    admin_client, endpoint, orders, docs
):
    response = admin_client.get(
        f"/endpoints/{endpoint.pk}?q=SEARCH", HTTP_HX_TARGET="catalog-sections", **HTMX
    )

    html = response.content.decode()
    assert html.lstrip().startswith('<div id="catalog-sections">')
    assert html.count('role="switch"') == 2
    shown = re.findall(r'name="entry" value="(\d+)"', html)
    assert sorted(map(int, shown)) == sorted(
        [row_id(endpoint, orders, "search"), row_id(endpoint, docs, "search")]
    )

    response = admin_client.post(
        f"/endpoints/{endpoint.pk}/entries/bulk",
        {"enabled": "1", "q": "search", "entry": shown},
        **HTMX,
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "Enabled 2 entries." in html
    assert html.count('aria-checked="true"') == 2
    assert served_names(endpoint) == ["acme-orders__search", "docs__search"]

    response = admin_client.post(
        f"/endpoints/{endpoint.pk}/entries/bulk", {"enabled": "0", "entry": shown[:1]}
    )
    assert response.status_code == 302
    assert len(served_names(endpoint)) == 1


def test_a_bulk_post_naming_another_endpoints_entry_changes_nothing(
    admin_client, org, endpoint, orders
):
    other_connection = ConnectionFactory(organization=org)
    store(other_connection, tools=[tool("secret")])
    other = services.endpoint_create(
        organization=org, name="Other", connection_ids=[other_connection.pk]
    )
    foreign_id = row_id(other, other_connection, "secret")

    response = admin_client.post(
        f"/endpoints/{endpoint.pk}/entries/bulk",
        {"enabled": "1", "entry": [row_id(endpoint, orders, "search"), foreign_id]},
        **HTMX,
    )

    assert response.status_code == 200
    assert "This entry is not part of the endpoint." in response.content.decode()
    assert served_names(endpoint) == [] and served_names(other) == []
    response = admin_client.post(
        f"/endpoints/{endpoint.pk}/entries/{foreign_id}/toggle", {"enabled": "1"}, **HTMX
    )
    assert response.status_code == 404


def test_alias_and_description_are_edited_on_the_entry_page(admin_client, endpoint, orders):
    entry_id = row_id(endpoint, orders, "get_order_status")
    url = f"/endpoints/{endpoint.pk}/entries/{entry_id}"

    response = admin_client.post(url, {"alias": "bad name", "description": ""})
    assert response.status_code == 200
    assert "Use 1 to 128 letters, digits, &#x27;_&#x27;, &#x27;.&#x27; or &#x27;-&#x27;." in (
        response.content.decode()
    )

    response = admin_client.post(url, {"alias": "order_status", "description": "Find an order."})
    assert response.status_code == 302
    page = admin_client.get(f"/endpoints/{endpoint.pk}").content.decode()
    assert '<code class="public-name">order_status</code>' in page
    assert "Find an order." in page


def test_the_review_shows_both_definitions_and_accepting_enables_the_new_one(
    admin_client, endpoint, orders
):
    enable(endpoint, orders, "search")
    store(orders, tools=[tool("search", "Search orders by customer.", customer="string")])
    entry_id = row_id(endpoint, orders, "search")

    page = admin_client.get(f"/endpoints/{endpoint.pk}").content.decode()
    assert "changed upstream — review" in page
    assert "1 to review" in page
    review = admin_client.get(f"/endpoints/{endpoint.pk}/entries/{entry_id}").content.decode()
    approved = re.search(r'id="approved-definition">(.*?)</pre>', review, re.S).group(1)
    current = re.search(r'id="current-definition">(.*?)</pre>', review, re.S).group(1)
    assert "Search orders." in approved and "customer" not in approved
    assert "Search orders by customer." in current and "customer" in current
    assert 'class="line add"' in current and 'class="line del"' in approved
    assert served_names(endpoint) == []

    response = admin_client.post(
        f"/endpoints/{endpoint.pk}/entries/{entry_id}/review", {"decision": "accept"}
    )

    assert response.status_code == 302
    assert served_names(endpoint) == ["acme-orders__search"]
    page = admin_client.get(f"/endpoints/{endpoint.pk}").content.decode()
    assert "changed upstream — review" not in page


def test_keeping_a_changed_tool_disabled_clears_the_review(admin_client, endpoint, orders):
    enable(endpoint, orders, "search")
    store(orders, tools=[tool("search", "Changed.")])
    entry_id = row_id(endpoint, orders, "search")

    admin_client.post(
        f"/endpoints/{endpoint.pk}/entries/{entry_id}/review", {"decision": "disable"}
    )

    row = selectors.endpoint_catalog_row(endpoint=endpoint, entry_id=entry_id)
    assert (row.state, row.enabled) == ("ok", False)


def test_edit_and_delete_with_confirmation(admin_client, endpoint, orders):
    response = admin_client.get(f"/endpoints/{endpoint.pk}/edit")
    assert response.status_code == 200
    assert 'value="sales"' in response.content.decode()
    response = admin_client.post(
        f"/endpoints/{endpoint.pk}/edit",
        {
            "name": "Sales EU",
            "slug": "sales-eu",
            "connections": [str(orders.pk)],
            "access": "organization",
        },
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.name, endpoint.slug, endpoint.prefix_names) == ("Sales EU", "sales-eu", False)

    response = admin_client.get(f"/endpoints/{endpoint.pk}/delete")
    assert "Delete Sales EU?" in response.content.decode()
    assert Endpoint.objects.exists()
    response = admin_client.post(f"/endpoints/{endpoint.pk}/delete")
    assert response.status_code == 302 and response["Location"] == "/endpoints/"
    assert not Endpoint.objects.exists()


def test_a_member_reads_but_cannot_change(member_client, endpoint, orders):
    enable(endpoint, orders, "search")
    entry_id = row_id(endpoint, orders, "search")

    page = member_client.get(f"/endpoints/{endpoint.pk}").content.decode()
    assert 'aria-disabled="true"' in page
    assert '<button type="submit" class="switch"' not in page  # only read-only spans
    assert page.count('<span class="switch" role="switch"') == 9
    assert "Enable all shown" not in page
    assert f"/endpoints/{endpoint.pk}/edit" not in page

    for method, path, data in [
        ("get", "/endpoints/new", None),
        ("get", f"/endpoints/{endpoint.pk}/edit", None),
        ("post", f"/endpoints/{endpoint.pk}/delete", {}),
        ("post", f"/endpoints/{endpoint.pk}/entries/{entry_id}/toggle", {"enabled": "0"}),
        ("post", f"/endpoints/{endpoint.pk}/entries/bulk", {"enabled": "0", "entry": [entry_id]}),
        ("post", f"/endpoints/{endpoint.pk}/entries/{entry_id}", {"alias": "x"}),
        ("post", f"/endpoints/{endpoint.pk}/entries/{entry_id}/review", {"decision": "accept"}),
    ]:
        response = getattr(member_client, method)(path, data)
        assert response.status_code == 403, path
    assert served_names(endpoint) == ["acme-orders__search"]
    assert member_client.get(f"/endpoints/{endpoint.pk}/entries/{entry_id}").status_code == 200


def test_another_organisations_endpoint_answers_404(admin_client, other_org):
    theirs = services.endpoint_create(organization=other_org, name="Globex secrets")
    for path in (
        f"/endpoints/{theirs.pk}",
        f"/endpoints/{theirs.pk}/edit",
        f"/endpoints/{theirs.pk}/delete",
        f"/endpoints/{uuid.uuid4()}",
        "/endpoints/not-a-uuid",
    ):
        response = admin_client.get(path)
        assert response.status_code == 404, path
        assert b"Globex secrets" not in response.content


def test_the_dashboard_still_works(admin_client, endpoint):
    assert admin_client.get("/").status_code == 200
