"""A test upstream (the SDK's MCPServer, FastMCP's successor) whose results are as
large as asked, with or without progress first.

``python -m tests.upstreams.sized_server PORT [--json-response]``

- ``sized(size)`` answers with one text of ``size`` ASCII characters;
- ``sized_after_progress(size, steps)`` reports ``steps`` progress steps first (when
  the caller sent a progress token), then answers like ``sized``;
- ``--json-response`` answers every request in JSON (no progress can then be sent),
  the mode in which a client reads a result of any size directly: the SDK's client
  caps one SSE event at 1 MiB, not a JSON body.

Tools return plain text content only (no structured copy), so the result's size on
the wire is the text's plus a few dozen bytes of envelope.
"""

from __future__ import annotations

import sys

from mcp.server import MCPServer
from mcp.server.mcpserver import Context

server = MCPServer("sized-test-server", version="1.0.0")


@server.tool(structured_output=False)
def sized(size: int) -> str:
    """A text of ``size`` characters."""
    return "x" * size


@server.tool(structured_output=False)
async def sized_after_progress(size: int, steps: int, ctx: Context) -> str:
    """Report ``steps`` progress steps, then answer with a text of ``size`` characters."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps, f"step {step}")
    return "x" * size


def main(argv: list[str]) -> None:
    port = int(argv[1])
    json_response = "--json-response" in argv[2:]
    server.run("streamable-http", host="127.0.0.1", port=port, json_response=json_response)


if __name__ == "__main__":
    main(sys.argv)
