"""Catalogs stored the way a health check stores them, and endpoints over them."""

from __future__ import annotations

from typing import Any, cast

import pytest

from connections.models import CatalogEntry, Connection
from connections.services import connection_catalog_store
from connections.upstream import CatalogSnapshot
from endpoints import services
from endpoints.models import Endpoint
from tests.factories import ConnectionFactory


def tool(name: str, description: str = "", **properties: Any) -> dict[str, Any]:
    """A tool definition as the SDK dumps it."""
    return {
        "name": name,
        "description": description or f"The {name} tool.",
        "inputSchema": {
            "type": "object",
            "properties": {key: {"type": value} for key, value in properties.items()},
        },
    }


def store(
    connection: Connection,
    *,
    tools: list[dict[str, Any]] | None = None,
    resources: list[dict[str, Any]] | None = None,
    templates: list[dict[str, Any]] | None = None,
    prompts: list[dict[str, Any]] | None = None,
) -> dict[str, int]:
    """Store a catalog exactly as a health check does (the real service, not a shortcut)."""
    return connection_catalog_store(
        connection=connection,
        snapshot=CatalogSnapshot(
            server_name=connection.name,
            server_version="1.0",
            protocol_version="2025-11-25",
            instructions="",
            tools=tools or [],
            resources=resources or [],
            resource_templates=templates or [],
            prompts=prompts or [],
        ),
    )


def entry(connection: Connection, key: str, kind: str = "tool") -> CatalogEntry:
    return CatalogEntry.objects.get(connection=connection, kind=kind, key=key)


ORDERS_TOOLS = [
    tool("get_order_status", "Look up an order.", order_id="string"),
    tool("check_inventory", "Stock of a SKU.", sku="string"),
    tool("search", "Search orders.", query="string"),
]
DOCS_TOOLS = [tool("search", "Search the docs.", query="string"), tool("fetch", "Fetch a page.")]


@pytest.fixture
def orders(org) -> Connection:
    connection = cast(
        Connection, ConnectionFactory(organization=org, name="Acme orders", slug="acme-orders")
    )
    store(
        connection,
        tools=ORDERS_TOOLS,
        resources=[
            {"uri": "catalog://products", "name": "products", "mimeType": "application/json"}
        ],
        templates=[{"uriTemplate": "orders://{order_id}", "name": "order"}],
        prompts=[{"name": "customer_reply", "description": "Reply to a customer."}],
    )
    return connection


@pytest.fixture
def docs(org) -> Connection:
    connection = cast(Connection, ConnectionFactory(organization=org, name="Docs", slug="docs"))
    store(
        connection,
        tools=DOCS_TOOLS,
        prompts=[{"name": "summarise", "description": "Summarise a page."}],
    )
    return connection


@pytest.fixture
def endpoint(org, orders, docs) -> Endpoint:
    return services.endpoint_create(
        organization=org, name="Sales", slug="sales", connection_ids=[orders.pk, docs.pk]
    )


def enable(endpoint: Endpoint, connection: Connection, *names: str, kind: str = "tool") -> None:
    services.endpoint_catalog_update(
        endpoint=endpoint,
        changes=[
            services.CatalogChange(connection_id=connection.pk, kind=kind, key=name, enabled=True)
            for name in names
        ],
    )
