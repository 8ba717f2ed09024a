"""A PyPI ``mcp`` 1.x FastMCP server, the line most Python MCP servers are on, for the
gateway's tests. Runs in the peers venv (``.cache/peers-venv``, made by
``.ci/install-python-peers``), never in the gateway's own environment (which has mcp 2.x).

    python fastmcp1_server.py PORT [--transport streamable-http|sse] [--stateless] [--json]
                                   [--calls-file PATH]

Binds 127.0.0.1 only. ``/calls`` (GET) answers how often each tool ran, so a test can
prove a call ran exactly once; ``--calls-file`` also appends each tool's name to a file,
which outlives the process (the ``crash`` tool ends it mid-call).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os

from mcp.server.fastmcp import Context, FastMCP
from starlette.requests import Request
from starlette.responses import JSONResponse

CALLS: collections.Counter[str] = collections.Counter()


def build(args: argparse.Namespace) -> FastMCP:
    server = FastMCP(
        "fastmcp1-peer",
        host="127.0.0.1",
        port=args.port,
        stateless_http=args.stateless,
        json_response=args.json,
    )

    def ran(name: str) -> None:
        CALLS[name] += 1
        if args.calls_file:
            with open(args.calls_file, "a") as log:
                log.write(name + "\n")

    @server.tool()
    def echo(text: str) -> str:
        """Echo the text back."""
        ran("echo")
        return text

    @server.tool()
    async def crash(ctx: Context) -> str:
        """Ends the server process while the call is in flight."""
        ran("crash")
        await ctx.info("about to crash")
        await asyncio.sleep(0.2)
        os._exit(1)

    @server.tool()
    def big(size: int) -> str:
        """A text of ``size`` bytes."""
        ran("big")
        return "x" * size

    @server.tool()
    async def steps(count: int, ctx: Context) -> str:
        """Report progress ``count`` times and log a line, then answer."""
        ran("steps")
        for step in range(1, count + 1):
            await ctx.report_progress(step, count, f"step {step}")
            await ctx.info(f"working on step {step}")
            await asyncio.sleep(0.01)
        return f"done {count}"

    @server.tool()
    def fail() -> str:
        """Always fails (an isError result)."""
        ran("fail")
        raise ValueError("this tool always fails")

    @server.custom_route("/calls", methods=["GET"])
    async def calls(request: Request) -> JSONResponse:
        return JSONResponse(dict(CALLS))

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--transport", default="streamable-http")
    parser.add_argument("--stateless", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--calls-file", default="")
    args = parser.parse_args()
    print(json.dumps({"port": args.port}), flush=True)
    build(args).run(transport=args.transport)


if __name__ == "__main__":
    main()
