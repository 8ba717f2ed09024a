"""The /api/mcp-endpoints REST API: shapes, toggles in bulk, tenancy, roles, errors."""

from __future__ import annotations

import uuid

import pytest

from endpoints import selectors, services
from endpoints.models import Endpoint
from tests.endpoints.conftest import store, tool
from tests.factories import ConnectionFactory, EndpointFactory

URL = "/api/mcp-endpoints"
ENDPOINT_FIELDS = {
    "id",
    "tenantId",
    "name",
    "description",
    "slug",
    "url",
    "connectionIds",
    "access",
    "memberIds",
    "prefixToolNames",
    "maxAccessDuration",
    "piiFilter",
    "createdAt",
    "updatedAt",
}
TOOL_FIELDS = {
    "connectionId",
    "connectionName",
    "upstreamName",
    "name",
    "alias",
    "description",
    "upstreamDescription",
    "enabled",
    "state",
}


def detail(endpoint_id) -> str:
    return f"{URL}/{endpoint_id}"


def tools_url(endpoint_id) -> str:
    return f"{URL}/{endpoint_id}/tools"


def patch_tools(person, endpoint, *items):
    return person.api().patch(tools_url(endpoint.pk), {"tools": list(items)}, format="json")


def by_name(body) -> dict[str, dict]:
    return {item["name"]: item for item in body["tools"]}


# --- endpoints ----------------------------------------------------------------------


def test_it_creates_an_endpoint_and_answers_201_with_the_object(admin, orders, docs, settings):
    settings.GATEWAY_PUBLIC_URL = "https://gw.example.com"

    response = admin.api().post(
        URL,
        {
            "name": "Sales",
            "description": "Tools for the sales team.",
            "connectionIds": [str(orders.pk), str(docs.pk)],
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == ENDPOINT_FIELDS
    endpoint = Endpoint.objects.get()
    assert body["id"] == str(endpoint.pk)
    assert body["tenantId"] == str(admin.organization.pk)
    assert body["slug"] == "sales"
    assert body["url"] == "https://gw.example.com/mcp/sales"
    assert body["connectionIds"] == [str(orders.pk), str(docs.pk)]  # by connection name
    assert (body["access"], body["memberIds"], body["prefixToolNames"]) == (
        "organization",
        [],
        True,
    )


def test_it_lists_only_the_organisations_endpoints(member, endpoint, other_org):
    EndpointFactory(organization=other_org, name="Theirs")

    response = member.api().get(URL)

    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["endpoints"]
    assert [e["name"] for e in body["endpoints"]] == ["Sales"]
    assert set(body["endpoints"][0]) == ENDPOINT_FIELDS


def test_the_list_runs_a_constant_number_of_queries(admin, orders, django_assert_max_num_queries):
    for n in range(10):
        services.endpoint_create(
            organization=admin.organization, name=f"E{n}", connection_ids=[orders.pk]
        )

    with django_assert_max_num_queries(8):
        response = admin.api().get(URL)
    assert len(response.json()["endpoints"]) == 10


def test_patch_changes_only_the_given_fields_and_delete_removes_it(admin, endpoint, docs, member):
    response = admin.api().patch(
        detail(endpoint.pk),
        {
            "connectionIds": [str(docs.pk)],
            "access": "members",
            "memberIds": [member.user.pk],
            "prefixToolNames": False,
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["name"] == "Sales"
    assert body["connectionIds"] == [str(docs.pk)]
    assert (body["access"], body["memberIds"], body["prefixToolNames"]) == (
        "members",
        [member.user.pk],
        False,
    )
    assert admin.api().get(detail(endpoint.pk)).json() == body

    assert admin.api().delete(detail(endpoint.pk)).status_code == 204
    assert not Endpoint.objects.exists()
    assert admin.api().get(detail(endpoint.pk)).status_code == 404


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ({}, {"name": ["This field is required."]}),
        ({"name": "X", "colour": "red"}, {"colour": ["Unknown field."]}),
        ({"name": "X", "slug": "Not OK"}, {"slug": [services.SLUG_RULE]}),
        (
            {"name": "X", "connectionIds": ["nope"]},
            {"connectionIds": ["'nope' is not a connection id."]},
        ),
        ({"name": "X", "access": "world"}, {"access": ['"world" is not a valid choice.']}),
        (
            {"name": "X", "memberIds": ["bob"]},
            {"memberIds": {"0": ["A valid integer is required."]}},
        ),
        ({"name": "X", "memberIds": [10**30]}, {"memberIds": [f"'{10**30}' is not a user id."]}),
    ],
)
def test_invalid_input_answers_400_with_a_message_per_field(admin, body, details):
    response = admin.api().post(URL, body, format="json")

    assert response.status_code == 400
    assert response.json()["details"] == details
    assert response.json()["error"].startswith("Invalid input")
    assert not Endpoint.objects.exists()


def test_another_tenants_connection_id_is_refused_like_an_unknown_one(admin, other_org):
    theirs = ConnectionFactory(organization=other_org)
    unknown = uuid.uuid4()

    response = admin.api().post(
        URL, {"name": "X", "connectionIds": [str(theirs.pk), str(unknown)]}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["details"] == {
        "connectionIds": [
            f"No connection with id {theirs.pk} in this organisation.",
            f"No connection with id {unknown} in this organisation.",
        ]
    }


def test_a_body_that_is_not_an_object_answers_400(admin, endpoint):
    for method, url in (
        ("post", URL),
        ("patch", detail(endpoint.pk)),
        ("patch", tools_url(endpoint.pk)),
    ):
        response = getattr(admin.api(), method)(url, [1, 2], format="json")
        assert response.status_code == 400, url
        assert response.json() == {"error": "The request body must be a JSON object."}


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        *[(m, "") for m in ("get", "patch", "delete")],
        *[(m, s) for m in ("get", "patch") for s in ("/tools", "/prompts", "/resources")],
    ],
)
def test_another_tenants_endpoint_answers_404_like_a_missing_one(
    admin, other_admin, method, suffix
):
    theirs = services.endpoint_create(organization=other_admin.organization, name="Theirs")

    for endpoint_id in (theirs.pk, uuid.uuid4(), "not-a-uuid"):
        response = getattr(admin.api(), method)(
            f"{detail(endpoint_id)}{suffix}", {"name": "Mine now"}, format="json"
        )
        assert response.status_code == 404
        assert response.json() == {"error": "MCP endpoint not found"}
    assert Endpoint.objects.get(pk=theirs.pk).name == "Theirs"


def test_members_read_but_only_admins_write(member, auditor, endpoint, orders):
    for person in (member, auditor):
        api = person.api()
        assert api.get(URL).status_code == 200
        assert api.get(detail(endpoint.pk)).status_code == 200
        assert api.get(tools_url(endpoint.pk)).status_code == 200
        writes = [
            api.post(URL, {"name": "X"}, format="json"),
            api.patch(detail(endpoint.pk), {"name": "X"}, format="json"),
            api.delete(detail(endpoint.pk)),
            patch_tools(
                person,
                endpoint,
                {"connectionId": str(orders.pk), "upstreamName": "search", "enabled": True},
            ),
        ]
        for response in writes:
            assert response.status_code == 403
            assert response.json() == {"error": "Only an organisation admin can change this."}
    assert selectors.endpoint_served(endpoint=endpoint).tools == ()


def test_it_answers_401_without_credentials(db, endpoint):
    from rest_framework.test import APIClient

    assert APIClient().get(tools_url(endpoint.pk)).status_code == 401


# --- tools ----------------------------------------------------------------------


def test_tools_list_in_the_reference_shape_all_disabled_at_first(member, endpoint, orders, docs):
    response = member.api().get(tools_url(endpoint.pk))

    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["tools"]
    assert [(t["connectionName"], t["name"]) for t in body["tools"]] == [
        ("Acme orders", "acme-orders__get_order_status"),
        ("Acme orders", "acme-orders__check_inventory"),
        ("Acme orders", "acme-orders__search"),
        ("Docs", "docs__search"),
        ("Docs", "docs__fetch"),
    ]
    first = body["tools"][0]
    assert set(first) == TOOL_FIELDS
    assert first == {
        "connectionId": str(orders.pk),
        "connectionName": "Acme orders",
        "upstreamName": "get_order_status",
        "name": "acme-orders__get_order_status",
        "alias": None,
        "description": "Look up an order.",
        "upstreamDescription": "Look up an order.",
        "enabled": False,
        "state": "ok",
    }


def test_patch_toggles_in_bulk_and_answers_the_new_list(admin, endpoint, orders, docs):
    response = patch_tools(
        admin,
        endpoint,
        {"connectionId": str(orders.pk), "upstreamName": "search", "enabled": True},
        {
            "connectionId": str(docs.pk),
            "upstreamName": "search",
            "enabled": True,
            "alias": "docs_search",
            "description": "Search the product docs.",
        },
    )

    assert response.status_code == 200, response.json()
    tools = by_name(response.json())
    assert tools["acme-orders__search"]["enabled"] is True
    assert tools["docs_search"] | {} == {
        "connectionId": str(docs.pk),
        "connectionName": "Docs",
        "upstreamName": "search",
        "name": "docs_search",
        "alias": "docs_search",
        "description": "Search the product docs.",
        "upstreamDescription": "Search the docs.",
        "enabled": True,
        "state": "ok",
    }
    assert sorted(t.name for t in selectors.endpoint_served(endpoint=endpoint).tools) == [
        "acme-orders__search",
        "docs_search",
    ]
    assert admin.api().get(tools_url(endpoint.pk)).json() == response.json()


def test_a_bulk_patch_with_one_bad_item_changes_nothing(admin, endpoint, orders, docs, other_org):
    theirs = ConnectionFactory(organization=other_org)
    store(theirs, tools=[tool("search")])

    response = patch_tools(
        admin,
        endpoint,
        {"connectionId": str(orders.pk), "upstreamName": "search", "enabled": True},
        {"connectionId": str(theirs.pk), "upstreamName": "search", "enabled": True},
        {"connectionId": str(docs.pk), "upstreamName": "fetch", "enabled": "yes"},
        {"connectionId": str(docs.pk), "upstreamName": "nope", "enabled": True},
        {"connectionId": str(docs.pk), "upstreamName": "fetch", "alias": "bad name"},
        {"connectionId": str(docs.pk), "upstreamName": "fetch", "colour": "red"},
        {"connectionId": str(docs.pk), "upstreamName": "fetch"},
        "not an object",
    )

    assert response.status_code == 400
    body = response.json()
    assert body["details"] == {
        "tools[2].enabled": ["Give true or false."],
        "tools[5].colour": ["Unknown field."],
        "tools[6]": ["Give enabled, alias or description to change."],
        "tools[7]": ["Each change must be an object."],
    }
    assert body["error"] == (
        "Invalid input (tools[2].enabled, tools[5].colour, tools[6], tools[7]): Give true or false."
    )

    # Types right, rules wrong: the service names the items too.
    response = patch_tools(
        admin,
        endpoint,
        {"connectionId": str(orders.pk), "upstreamName": "search", "enabled": True},
        {"connectionId": str(theirs.pk), "upstreamName": "search", "enabled": True},
        {"connectionId": str(docs.pk), "upstreamName": "nope", "enabled": True},
        {"connectionId": str(docs.pk), "upstreamName": "fetch", "alias": "bad name"},
    )
    assert response.status_code == 400
    assert response.json()["details"] == {
        "tools[1].connectionId": ["No connection with this id is connected to the endpoint."],
        "tools[2].upstreamName": ["The server has no tool 'nope' in its catalog."],
        "tools[3].alias": [services.ALIAS_RULE],
    }
    assert selectors.endpoint_served(endpoint=endpoint).tools == ()


def test_patch_needs_a_tools_list(admin, endpoint):
    response = admin.api().patch(tools_url(endpoint.pk), {"tool": []}, format="json")

    assert response.status_code == 400
    assert response.json()["details"] == {
        "tool": ["Unknown field."],
        "tools": ['Give "tools": a list of changes.'],
    }


def test_a_tool_changed_upstream_shows_changed_and_enabling_it_accepts(admin, endpoint, orders):
    patch_tools(
        admin, endpoint, {"connectionId": str(orders.pk), "upstreamName": "search", "enabled": True}
    )
    store(orders, tools=[tool("search", "Search orders, now with filters.", status="string")])

    tools = by_name(admin.api().get(tools_url(endpoint.pk)).json())
    assert (tools["acme-orders__search"]["enabled"], tools["acme-orders__search"]["state"]) == (
        False,
        "changed",
    )
    assert tools["acme-orders__get_order_status"]["state"] == "missing"
    response = patch_tools(
        admin,
        endpoint,
        {"connectionId": str(orders.pk), "upstreamName": "get_order_status", "enabled": True},
    )
    assert response.json()["details"] == {
        "tools[0].enabled": ["'get_order_status' is missing upstream and cannot be enabled."]
    }

    response = patch_tools(
        admin, endpoint, {"connectionId": str(orders.pk), "upstreamName": "search", "enabled": True}
    )

    tools = by_name(response.json())
    assert (tools["acme-orders__search"]["enabled"], tools["acme-orders__search"]["state"]) == (
        True,
        "ok",
    )
    assert tools["acme-orders__search"]["description"] == "Search orders, now with filters."


def test_prompts_and_resources_have_their_own_lists(admin, endpoint, orders):
    prompts = admin.api().get(f"{detail(endpoint.pk)}/prompts").json()
    assert [p["name"] for p in prompts["prompts"]] == [
        "acme-orders__customer_reply",
        "docs__summarise",
    ]

    response = admin.api().patch(
        f"{detail(endpoint.pk)}/resources",
        {
            "resources": [
                {
                    "connectionId": str(orders.pk),
                    "type": "template",
                    "upstreamUri": "orders://{order_id}",
                    "enabled": True,
                },
                {
                    "connectionId": str(orders.pk),
                    "type": "resource",
                    "upstreamUri": "catalog://products",
                    "description": "All products.",
                },
            ]
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    resources = response.json()["resources"]
    assert [(r["type"], r["uri"], r["enabled"], r["description"]) for r in resources] == [
        ("resource", "mcp-gateway://acme-orders/catalog://products", False, "All products."),
        ("template", "mcp-gateway://acme-orders/orders://{order_id}", True, ""),
    ]
    response = admin.api().patch(
        f"{detail(endpoint.pk)}/resources",
        {
            "resources": [
                {
                    "connectionId": str(orders.pk),
                    "type": "resource",
                    "upstreamUri": "catalog://products",
                    "alias": "x",
                }
            ]
        },
        format="json",
    )
    assert response.json()["details"] == {"resources[0].alias": ["Unknown field."]}


def test_the_openapi_schema_describes_the_endpoints_api(admin):
    response = admin.api().get("/api/schema", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths["/api/mcp-endpoints"]) == {"get", "post"}
    assert set(paths["/api/mcp-endpoints/{endpoint_id}"]) >= {"get", "patch", "delete"}
    for group in ("tools", "prompts", "resources"):
        assert set(paths[f"/api/mcp-endpoints/{{endpoint_id}}/{group}"]) >= {"get", "patch"}
    schemas = response.json()["components"]["schemas"]
    assert "connectionIds" in schemas["EndpointOut"]["properties"]
