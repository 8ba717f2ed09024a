"""The peer gateway of the benchmarks: FastMCP's proxy in front of one or more upstreams.

Runs in its own virtualenv (``benchmarks/.venv-peer``, fastmcp pinned in
``benchmarks/requirements-peer.txt``) so its dependencies never meet the gateway's.

Each upstream gets one ``fastmcp.Client`` connected before the server starts and handed to
``create_proxy`` *connected*: FastMCP then reuses that one upstream session for every
request ("reusing existing session for all requests"), which is its fastest configuration —
a disconnected client or a URL target would open a fresh upstream session per request.
The benchmark upstream counts handshakes per path, so the runner can check this holds.

With one upstream the proxy is served as is (tool names unchanged); with several, each proxy
is mounted on one FastMCP server under the namespace ``u<i>`` (tools ``u0_tool_0`` …).
Served over Streamable HTTP by uvicorn at ``http://HOST:PORT/mcp``, with FastMCP's defaults
(stateful sessions, SSE responses) unless ``--json-response`` / ``--stateless`` are given.
The runner passes ``--json-response``: measured, it halves FastMCP's cost per call, while
``--stateless`` makes it dearer.

Run: ``benchmarks/.venv-peer/bin/python benchmarks/peer.py --port 9000 --upstream URL …``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from typing import Any


async def serve(
    *, host: str, port: int, upstreams: list[str], json_response: bool, stateless: bool
) -> None:
    from fastmcp import Client, FastMCP  # type: ignore[import-not-found,unused-ignore]
    from fastmcp.server import create_proxy  # type: ignore[import-not-found,unused-ignore]

    async with contextlib.AsyncExitStack() as stack:
        clients: list[Any] = []
        for url in upstreams:
            client = Client(url)
            await stack.enter_async_context(client)
            clients.append(client)
        server: Any
        if len(clients) == 1:
            server = create_proxy(clients[0], name="fastmcp-peer")
        else:
            server = FastMCP("fastmcp-peer")
            for index, client in enumerate(clients):
                server.mount(create_proxy(client, name=f"u{index}"), namespace=f"u{index}")
        await server.run_http_async(
            show_banner=False,
            transport="http",
            host=host,
            port=port,
            path="/mcp",
            log_level="warning",
            json_response=json_response or None,
            stateless_http=stateless or None,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", action="append", required=True, help="upstream MCP URL")
    parser.add_argument("--json-response", action="store_true")
    parser.add_argument("--stateless", action="store_true")
    args = parser.parse_args(argv)
    logging.getLogger("fastmcp").setLevel(logging.WARNING)
    asyncio.run(
        serve(
            host=args.host,
            port=args.port,
            upstreams=args.upstream,
            json_response=args.json_response,
            stateless=args.stateless,
        )
    )


if __name__ == "__main__":
    main()
