"""The served view the transport asks for: names, definitions, routing, query count."""

from __future__ import annotations

from endpoints import selectors, services
from tests.endpoints.conftest import enable, store, tool


def test_the_served_view_carries_public_names_in_definitions_and_routes_back(endpoint, orders):
    enable(endpoint, orders, "get_order_status")
    enable(endpoint, orders, "customer_reply", kind="prompt")

    served = selectors.endpoint_served(endpoint=endpoint)

    (served_tool,) = served.tools
    assert served_tool.name == "acme-orders__get_order_status"
    assert served_tool.definition == {
        "name": "acme-orders__get_order_status",
        "description": "Look up an order.",
        "inputSchema": {"type": "object", "properties": {"order_id": {"type": "string"}}},
    }
    assert (served_tool.connection_id, served_tool.upstream_name) == (orders.pk, "get_order_status")
    (prompt,) = served.prompts
    assert prompt.name == "acme-orders__customer_reply"
    assert prompt.definition["name"] == "acme-orders__customer_reply"
    assert served.prompt("acme-orders__customer_reply").upstream_name == "customer_reply"
    assert served.tool("get_order_status") is None
    assert served.tool("acme-orders__check_inventory") is None  # not enabled
    assert served.prompt("docs__summarise") is None


def test_resource_uris_are_rewritten_and_reads_route_to_the_right_server(endpoint, orders):
    enable(endpoint, orders, "catalog://products", kind="resource")
    enable(endpoint, orders, "orders://{order_id}", kind="resource_template")

    served = selectors.endpoint_served(endpoint=endpoint)

    assert [r.uri for r in served.resources] == ["mcp-gateway://acme-orders/catalog://products"]
    assert served.resources[0].definition["uri"] == "mcp-gateway://acme-orders/catalog://products"
    (template,) = served.resource_templates
    assert template.uri_template == "mcp-gateway://acme-orders/orders://{order_id}"
    assert template.definition["uriTemplate"] == template.uri_template
    assert served.resource_template(template.uri_template) is template

    route = served.resource_route("mcp-gateway://acme-orders/orders://ORD-1001")
    assert (route.connection_id, route.upstream_uri) == (orders.pk, "orders://ORD-1001")
    route = served.resource_route("mcp-gateway://acme-orders/catalog://products")
    assert (route.connection_id, route.upstream_uri) == (orders.pk, "catalog://products")
    for uri in (
        "catalog://products",  # not the public form
        "mcp-gateway://docs/catalog://products",  # another server
        "mcp-gateway://acme-orders/secret://keys",  # matches nothing enabled
    ):
        assert served.resource_route(uri) is None, uri


def test_a_disabled_template_does_not_let_reads_through(endpoint, orders):
    enable(endpoint, orders, "catalog://products", kind="resource")

    served = selectors.endpoint_served(endpoint=endpoint)

    assert served.resource_route("mcp-gateway://acme-orders/orders://ORD-1001") is None


def test_unprefixed_with_one_resource_server_keeps_its_uris(endpoint, orders):
    services.endpoint_update(endpoint=endpoint, prefix_names=False)
    enable(endpoint, orders, "catalog://products", kind="resource")
    enable(endpoint, orders, "orders://{order_id}", kind="resource_template")

    served = selectors.endpoint_served(endpoint=endpoint)

    assert [r.uri for r in served.resources] == ["catalog://products"]
    assert served.resource_templates[0].uri_template == "orders://{order_id}"
    assert served.resource_route("orders://ORD-7").upstream_uri == "orders://ORD-7"
    assert served.resource_route("mcp-gateway://acme-orders/orders://ORD-7") is None


def test_unprefixed_with_two_resource_servers_rewrites_every_uri(endpoint, orders, docs):
    services.endpoint_update(endpoint=endpoint, prefix_names=False)
    store(docs, resources=[{"uri": "docs://index", "name": "index"}])
    enable(endpoint, orders, "catalog://products", kind="resource")

    served = selectors.endpoint_served(endpoint=endpoint)

    assert [r.uri for r in served.resources] == ["mcp-gateway://acme-orders/catalog://products"]


def test_the_served_view_takes_two_queries_however_many_tools(
    endpoint, orders, docs, django_assert_num_queries
):
    store(orders, tools=[tool(f"tool_{n}") for n in range(60)])
    services.endpoint_entries_set_enabled(
        endpoint=endpoint,
        entry_ids=[row.entry_id for row in selectors.endpoint_catalog_rows(endpoint=endpoint)],
        enabled=True,
    )

    with django_assert_num_queries(2):
        served = selectors.endpoint_served(endpoint=endpoint)

    assert len(served.tools) == 62
    assert len({t.name for t in served.tools}) == 62
