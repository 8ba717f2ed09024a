"""The demo upstream MCP server: a small order-management service.

``make run`` starts it on a loopback port (``GATEWAY_DEMO_PORT``) and registers it
as a connection of the demo organisation, so a newcomer sees a real MCP server
behind the gateway. Run it alone with
``python -m connections.demo.upstream [streamable-http|sse|stdio] [PORT]``.
"""

from __future__ import annotations

import sys
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from mcp.server import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

INSTRUCTIONS = (
    "Order management for the Acme demo shop. Look orders up by id (ORD-1001 … ORD-1005) "
    "with get_order_status, check stock by SKU with check_inventory, and price a basket "
    "with create_quote before promising a customer anything."
)

server = MCPServer(
    "acme-orders",
    title="Acme order management (demo)",
    version="1.0.0",
    instructions=INSTRUCTIONS,
)

ORDERS: dict[str, dict[str, Any]] = {
    "ORD-1001": {"status": "shipped", "carrier": "DHL", "items": ["SKU-RED-MUG"], "eta_days": 2},
    "ORD-1002": {"status": "processing", "carrier": None, "items": ["SKU-TEE-M"], "eta_days": 5},
    "ORD-1003": {"status": "delivered", "carrier": "UPS", "items": ["SKU-CAP"], "eta_days": 0},
    "ORD-1004": {
        "status": "cancelled",
        "carrier": None,
        "items": ["SKU-RED-MUG"],
        "eta_days": None,
    },
    "ORD-1005": {
        "status": "awaiting payment",
        "carrier": None,
        "items": ["SKU-HOODIE-L"],
        "eta_days": None,
    },
}
INVENTORY: dict[str, dict[str, Any]] = {
    "SKU-RED-MUG": {"name": "Red mug", "price": 12.5, "stock": 140, "warehouse": "Leeds"},
    "SKU-TEE-M": {"name": "T-shirt, M", "price": 19.0, "stock": 0, "warehouse": "Leeds"},
    "SKU-CAP": {"name": "Cap", "price": 15.0, "stock": 32, "warehouse": "Lyon"},
    "SKU-HOODIE-L": {"name": "Hoodie, L", "price": 49.0, "stock": 7, "warehouse": "Lyon"},
}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def get_order_status(
    order_id: Annotated[str, Field(description="An order id such as ORD-1001")],
) -> dict[str, Any]:
    """Look up the status, carrier and expected delivery date of an order."""
    order = ORDERS.get(order_id.strip().upper())
    if order is None:
        raise ValueError(f"No order {order_id!r}; known orders are {', '.join(ORDERS)}.")
    eta = order["eta_days"]
    return {
        "orderId": order_id.upper(),
        "status": order["status"],
        "carrier": order["carrier"],
        "items": order["items"],
        "expectedDelivery": (date.today() + timedelta(days=eta)).isoformat() if eta else None,
    }


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def check_inventory(
    sku: Annotated[str, Field(description="A stock-keeping unit such as SKU-RED-MUG")],
) -> dict[str, Any]:
    """How many units of a product are in stock, and where."""
    item = INVENTORY.get(sku.strip().upper())
    if item is None:
        raise ValueError(f"Unknown SKU {sku!r}; known SKUs are {', '.join(INVENTORY)}.")
    return {"sku": sku.upper(), **item, "inStock": item["stock"] > 0}


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def create_quote(
    items: Annotated[dict[str, int], Field(description="SKU to quantity, e.g. {'SKU-CAP': 2}")],
    currency: Literal["EUR", "GBP"] = "EUR",
) -> dict[str, Any]:
    """Price a basket: line totals, shipping and the grand total, valid for 7 days."""
    rate = 1.0 if currency == "EUR" else 0.86
    lines = []
    for sku, quantity in items.items():
        item = INVENTORY.get(sku.upper())
        if item is None:
            raise ValueError(f"Unknown SKU {sku!r}.")
        if quantity < 1:
            raise ValueError(f"Quantity of {sku} must be at least 1.")
        lines.append(
            {
                "sku": sku.upper(),
                "quantity": quantity,
                "total": round(item["price"] * quantity * rate, 2),
            }
        )
    subtotal = round(sum(line["total"] for line in lines), 2)
    shipping = 0.0 if subtotal >= 50 else round(4.9 * rate, 2)
    return {
        "currency": currency,
        "lines": lines,
        "shipping": shipping,
        "total": round(subtotal + shipping, 2),
        "validUntil": (date.today() + timedelta(days=7)).isoformat(),
    }


@server.resource("orders://{order_id}", mime_type="application/json")
def order_resource(order_id: str) -> dict[str, Any]:
    """An order as JSON."""
    return get_order_status(order_id)


@server.resource("catalog://products", mime_type="application/json")
def product_catalog() -> dict[str, Any]:
    """Every product with its price and stock."""
    return INVENTORY


@server.prompt()
def customer_reply(order_id: str) -> str:
    """Draft a friendly reply to a customer asking where their order is."""
    return (
        f"A customer asks about order {order_id}. Use get_order_status, then write a short, "
        "friendly reply with the status and the expected delivery date."
    )


def main(argv: list[str]) -> None:
    transport = argv[1] if len(argv) > 1 else "streamable-http"
    port = int(argv[2]) if len(argv) > 2 else 8765
    if transport == "stdio":
        server.run("stdio")
    elif transport == "sse":
        server.run("sse", host="127.0.0.1", port=port)
    else:
        server.run("streamable-http", host="127.0.0.1", port=port)


if __name__ == "__main__":
    main(sys.argv)
