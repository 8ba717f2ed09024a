"""Endpoint services: toggles, catalog refreshes, reviews, aliases, validation, access."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from connections.models import CatalogEntry
from endpoints import selectors, services
from endpoints.models import Endpoint, EndpointAccess, EndpointToggle
from oauth.models import Role
from tests.conftest import make_person
from tests.endpoints.conftest import ORDERS_TOOLS, enable, entry, store, tool
from tests.factories import ConnectionFactory, OrganizationFactory


def served_names(endpoint: Endpoint) -> list[str]:
    return [t.name for t in selectors.endpoint_served(endpoint=endpoint).tools]


def tool_row(endpoint: Endpoint, connection, name: str) -> selectors.CatalogRow:
    return next(
        row
        for row in selectors.endpoint_catalog_rows(endpoint=endpoint, group="tools")
        if row.connection_id == connection.pk and row.key == name
    )


def change(connection, name: str, **fields) -> services.CatalogChange:
    return services.CatalogChange(connection_id=connection.pk, kind="tool", key=name, **fields)


# --- defaults and toggles --------------------------------------------------------------


def test_every_tool_resource_and_prompt_starts_disabled(endpoint):
    rows = selectors.endpoint_catalog_rows(endpoint=endpoint)

    assert len(rows) == 5 + 2 + 2  # tools, prompts, a resource and a template
    assert not any(row.enabled for row in rows)
    assert {row.state for row in rows} == {"ok"}
    served = selectors.endpoint_served(endpoint=endpoint)
    assert (served.tools, served.prompts, served.resources, served.resource_templates) == (
        (),
        (),
        (),
        (),
    )
    assert not EndpointToggle.objects.exists()


def test_enabling_serves_the_tool_under_its_prefixed_name(endpoint, orders):
    enable(endpoint, orders, "get_order_status")

    assert served_names(endpoint) == ["acme-orders__get_order_status"]
    toggle = EndpointToggle.objects.get()
    assert toggle.enabled
    assert toggle.acknowledged_hash == entry(orders, "get_order_status").definition_hash


def test_disabling_stops_serving_it(endpoint, orders):
    enable(endpoint, orders, "get_order_status", "search")
    services.endpoint_catalog_update(
        endpoint=endpoint, changes=[change(orders, "search", enabled=False)]
    )

    assert served_names(endpoint) == ["acme-orders__get_order_status"]


def test_a_connection_on_two_endpoints_has_separate_toggles(org, endpoint, orders):
    other = services.endpoint_create(organization=org, name="Support", connection_ids=[orders.pk])
    enable(endpoint, orders, "search")

    assert served_names(endpoint) == ["acme-orders__search"]
    assert served_names(other) == []


# --- catalog refreshes --------------------------------------------------------------


def test_a_catalog_refresh_keeps_the_toggles_and_new_tools_appear_disabled(endpoint, orders):
    enable(endpoint, orders, "get_order_status", "check_inventory")
    entry_ids = set(CatalogEntry.objects.filter(connection=orders).values_list("pk", flat=True))

    store(orders, tools=ORDERS_TOOLS)  # the same catalog again
    store(orders, tools=[*ORDERS_TOOLS, tool("cancel_order", order_id="string")])

    assert entry_ids < set(
        CatalogEntry.objects.filter(connection=orders).values_list("pk", flat=True)
    )
    assert served_names(endpoint) == [
        "acme-orders__get_order_status",
        "acme-orders__check_inventory",
    ]
    new = tool_row(endpoint, orders, "cancel_order")
    assert (new.enabled, new.state) == (False, "ok")


def test_a_definition_changed_upstream_is_held_until_an_admin_accepts_it(endpoint, orders):
    enable(endpoint, orders, "get_order_status")
    before = entry(orders, "get_order_status").definition
    changed = tool("get_order_status", "Look up an order.", order_id="string", verbose="boolean")

    store(orders, tools=[changed, *ORDERS_TOOLS[1:]])

    row = tool_row(endpoint, orders, "get_order_status")
    assert (row.enabled, row.enabled_intent, row.state) == (False, True, "changed")
    assert served_names(endpoint) == []
    assert (
        selectors.endpoint_approved_definition(
            endpoint=endpoint, entry=entry(orders, "get_order_status")
        )
        == before
    )

    # A refresh with the same changed definition keeps holding it.
    store(orders, tools=[changed, *ORDERS_TOOLS[1:]])
    assert tool_row(endpoint, orders, "get_order_status").state == "changed"

    services.endpoint_entry_accept(endpoint=endpoint, entry_id=row.entry_id)

    assert served_names(endpoint) == ["acme-orders__get_order_status"]
    served = selectors.endpoint_served(endpoint=endpoint).tools[0]
    assert "verbose" in served.definition["inputSchema"]["properties"]
    assert tool_row(endpoint, orders, "get_order_status").state == "ok"
    assert (
        selectors.endpoint_approved_definition(
            endpoint=endpoint, entry=entry(orders, "get_order_status")
        )
        == changed
    )


def test_each_endpoint_reviews_a_change_for_itself(org, endpoint, orders):
    other = services.endpoint_create(organization=org, name="Support", connection_ids=[orders.pk])
    enable(endpoint, orders, "search")
    store(orders, tools=[*ORDERS_TOOLS[:2], tool("search", "Search orders, faster.")])

    assert tool_row(endpoint, orders, "search").state == "changed"
    # Never enabled on the other endpoint: nothing to review there, it is simply off.
    assert tool_row(other, orders, "search").state == "ok"
    enable(other, orders, "search")
    assert served_names(other) == ["acme-orders__search"]
    assert served_names(endpoint) == []


def test_a_missing_tool_is_shown_missing_and_not_served_then_comes_back(endpoint, orders):
    enable(endpoint, orders, "check_inventory")

    store(orders, tools=[ORDERS_TOOLS[0], ORDERS_TOOLS[2]])

    row = tool_row(endpoint, orders, "check_inventory")
    assert (row.state, row.enabled) == ("missing", False)
    assert served_names(endpoint) == []
    assert selectors.endpoint_served(endpoint=endpoint).tool("acme-orders__check_inventory") is None

    store(orders, tools=ORDERS_TOOLS)  # back, unchanged: served again
    assert served_names(endpoint) == ["acme-orders__check_inventory"]


def test_a_missing_tool_cannot_be_enabled(endpoint, orders):
    store(orders, tools=ORDERS_TOOLS[:2])

    with pytest.raises(ValidationError) as error:
        services.endpoint_catalog_update(
            endpoint=endpoint,
            changes=[change(orders, "search", enabled=True, label="tools[0]")],
        )

    assert error.value.message_dict == {
        "tools[0].enabled": ["'search' is missing upstream and cannot be enabled."]
    }


def test_enabling_all_shown_skips_what_needs_a_review(endpoint, orders):
    enable(endpoint, orders, "search")
    store(orders, tools=[ORDERS_TOOLS[0], tool("search", "Changed.")])  # check_inventory missing
    ids = [
        tool_row(endpoint, orders, name).entry_id
        for name in ("get_order_status", "check_inventory", "search")
    ]

    result = services.endpoint_entries_set_enabled(endpoint=endpoint, entry_ids=ids, enabled=True)

    assert result.changed == 1
    assert sorted(row.key for row in result.skipped) == ["check_inventory", "search"]
    assert served_names(endpoint) == ["acme-orders__get_order_status"]
    assert tool_row(endpoint, orders, "search").state == "changed"


# --- names and aliases -----------------------------------------------------------


def test_two_servers_with_the_same_tool_name_never_collide(endpoint, orders, docs):
    enable(endpoint, orders, "search")
    enable(endpoint, docs, "search")

    assert sorted(served_names(endpoint)) == ["acme-orders__search", "docs__search"]
    served = selectors.endpoint_served(endpoint=endpoint)
    assert served.tool("docs__search").connection_id == docs.pk
    assert served.tool("docs__search").upstream_name == "search"
    assert served.tool("acme-orders__search").connection_id == orders.pk


def test_unprefixed_mode_serves_bare_names_and_falls_back_on_collisions(endpoint, orders, docs):
    services.endpoint_update(endpoint=endpoint, prefix_names=False)
    enable(endpoint, orders, "search", "get_order_status")
    enable(endpoint, docs, "fetch")

    # "search" exists on both servers (enabled or not): both keep the prefix, so
    # enabling the docs one later renames nothing.
    assert sorted(served_names(endpoint)) == ["acme-orders__search", "fetch", "get_order_status"]
    enable(endpoint, docs, "search")
    assert sorted(served_names(endpoint)) == [
        "acme-orders__search",
        "docs__search",
        "fetch",
        "get_order_status",
    ]


def test_an_alias_renames_the_tool_and_is_validated(endpoint, orders, docs):
    enable(endpoint, orders, "get_order_status")
    services.endpoint_catalog_update(
        endpoint=endpoint, changes=[change(orders, "get_order_status", alias="order_status")]
    )

    served = selectors.endpoint_served(endpoint=endpoint)
    assert served_names(endpoint) == ["order_status"]
    assert served.tool("order_status").upstream_name == "get_order_status"
    assert served.tool("order_status").definition["name"] == "order_status"

    bad = {
        "has space": "Use 1 to 128 letters, digits, '_', '.' or '-'.",
        "x" * 129: "Use 1 to 128 letters, digits, '_', '.' or '-'.",
        "order_status": "'order_status' is already the name of the tool 'get_order_status' "
        "of Acme orders.",
        "docs__fetch": "'docs__fetch' is already the name of the tool 'fetch' of Docs.",
    }
    for alias, message in bad.items():
        with pytest.raises(ValidationError) as error:
            services.endpoint_catalog_update(
                endpoint=endpoint, changes=[change(orders, "search", alias=alias, label="t")]
            )
        assert error.value.message_dict == {"t.alias": [message]}, alias

    services.endpoint_catalog_update(
        endpoint=endpoint, changes=[change(orders, "get_order_status", alias=None)]
    )
    assert served_names(endpoint) == ["acme-orders__get_order_status"]


def test_two_aliases_in_one_request_cannot_take_the_same_name(endpoint, orders, docs):
    with pytest.raises(ValidationError) as error:
        services.endpoint_catalog_update(
            endpoint=endpoint,
            changes=[
                change(orders, "search", alias="find", label="tools[0]"),
                change(docs, "search", alias="find", label="tools[1]"),
            ],
        )
    assert set(error.value.message_dict) == {"tools[0].alias", "tools[1].alias"}
    assert not EndpointToggle.objects.exists()


def test_a_description_override_is_served_and_blank_restores_the_upstream_one(endpoint, orders):
    enable(endpoint, orders, "search")
    services.endpoint_catalog_update(
        endpoint=endpoint, changes=[change(orders, "search", description="  Find orders.  ")]
    )
    served = selectors.endpoint_served(endpoint=endpoint).tools[0]
    assert (served.description, served.definition["description"]) == (
        "Find orders.",
        "Find orders.",
    )

    services.endpoint_catalog_update(
        endpoint=endpoint, changes=[change(orders, "search", description="")]
    )
    assert selectors.endpoint_served(endpoint=endpoint).tools[0].description == "Search orders."


def test_a_bulk_change_is_all_or_nothing(endpoint, orders, docs):
    with pytest.raises(ValidationError) as error:
        services.endpoint_catalog_update(
            endpoint=endpoint,
            changes=[
                change(orders, "search", enabled=True, label="tools[0]"),
                change(docs, "nope", enabled=True, label="tools[1]"),
                change(docs, "fetch", enabled=True, label="tools[2]"),
                change(docs, "fetch", enabled=False, label="tools[3]"),
            ],
        )

    assert error.value.message_dict == {
        "tools[1].upstreamName": ["The server has no tool 'nope' in its catalog."],
        "tools[3].upstreamName": ["Listed twice (also at tools[2])."],
    }
    assert served_names(endpoint) == []


def test_a_connection_not_on_the_endpoint_is_refused(endpoint, org, other_org):
    for connection in (
        ConnectionFactory(organization=org),
        ConnectionFactory(organization=other_org),
    ):
        store(connection, tools=[tool("search")])
        with pytest.raises(ValidationError) as error:
            services.endpoint_catalog_update(
                endpoint=endpoint, changes=[change(connection, "search", enabled=True, label="x")]
            )
        assert error.value.message_dict == {
            "x.connectionId": ["No connection with this id is connected to the endpoint."]
        }


# --- endpoints ----------------------------------------------------------------------


def test_removing_a_server_drops_its_toggles_and_adding_it_back_starts_disabled(
    endpoint, orders, docs
):
    enable(endpoint, orders, "search")
    enable(endpoint, docs, "fetch")

    services.endpoint_update(endpoint=endpoint, connection_ids=[docs.pk])
    assert served_names(endpoint) == ["docs__fetch"]
    services.endpoint_update(endpoint=endpoint, connection_ids=[docs.pk, orders.pk])

    assert served_names(endpoint) == ["docs__fetch"]
    assert EndpointToggle.objects.filter(entry__connection=orders).count() == 0


def test_it_derives_a_free_slug_and_the_url_from_the_public_base(org, settings):
    settings.GATEWAY_PUBLIC_URL = "https://gw.example.com"
    first = services.endpoint_create(organization=org, name="Sales team")
    second = services.endpoint_create(organization=OrganizationFactory(), name="Sales team")

    assert (first.slug, second.slug) == ("sales-team", "sales-team-2")
    assert first.url == "https://gw.example.com/mcp/sales-team"


def test_it_refuses_bad_endpoint_fields_with_messages_per_field(org, other_org):
    services.endpoint_create(organization=other_org, name="Taken", slug="taken")
    services.endpoint_create(organization=org, name="Sales")
    foreign = ConnectionFactory(organization=other_org)

    with pytest.raises(ValidationError) as error:
        services.endpoint_create(
            organization=org,
            name="sales",
            slug="taken",
            connection_ids=[str(foreign.pk), "nope"],
            access="everyone",
            member_ids=[999_999],
        )

    assert error.value.message_dict == {
        "name": ["An endpoint named 'sales' already exists."],
        "slug": ["The slug 'taken' is already taken; choose another."],
        "connectionIds": [
            "'nope' is not a connection id.",
            f"No connection with id {foreign.pk} in this organisation.",
        ],
        "access": ["Choose one of: organization, members."],
        "memberIds": ["User 999999 is not a member of this organisation."],
    }
    for slug in ("Has-Caps", "-edge", "under_score", "x" * 64, ""):
        with pytest.raises(ValidationError) as error:
            services.endpoint_update(endpoint=Endpoint.objects.get(name="Sales"), slug=slug)
        assert list(error.value.message_dict) == ["slug"], slug


def test_only_chosen_members_and_admins_may_use_a_restricted_endpoint(org, other_org):
    admin = make_person(org, Role.ADMIN, "alice").membership
    member = make_person(org, Role.MEMBER, "bob").membership
    chosen = make_person(org, Role.MEMBER, "dave").membership
    auditor = make_person(org, Role.AUDITOR, "carol").membership
    outsider = make_person(other_org, Role.ADMIN, "mallory").membership
    endpoint = services.endpoint_create(organization=org, name="Sales")

    def may_use(membership) -> bool:
        return selectors.endpoint_member_may_use(endpoint=endpoint, membership=membership)

    assert [may_use(m) for m in (admin, member, chosen, auditor, outsider)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    services.endpoint_update(
        endpoint=endpoint, access=EndpointAccess.MEMBERS, member_ids=[chosen.user_id]
    )
    assert [may_use(m) for m in (admin, member, chosen, auditor, outsider)] == [
        True,
        False,
        True,
        False,
        False,
    ]
