# mypy: ignore-errors
# (runs in the peers virtualenv, on PyPI mcp 1.x; the project's mypy sees mcp 2.x)
"""The interop suite's Python upstreams: PyPI ``mcp`` 1.x FastMCP or PyPI ``fastmcp``.

Runs in the peers virtualenv (.cache/peers-venv, tests/peers/python-requirements.txt), never
in the project's (which has the ``mcp`` 2.x SDK):

    python py_server.py --sdk mcp|fastmcp --mode default|stateless|json|sse --port N

``--sdk mcp`` is ``mcp.server.fastmcp.FastMCP`` (the line most Python servers are on);
``--mode`` picks its default stateful Streamable HTTP, ``stateless_http``, ``json_response``
or its legacy HTTP+SSE transport. ``--sdk fastmcp`` is the standalone ``fastmcp`` package
over Streamable HTTP. Both serve on 127.0.0.1, /mcp (or /sse), the same tools, resource and
prompt as ts_server.mjs; a call with a ``key`` is counted and ``calls`` reads the count.
"""

# No `from __future__ import annotations`: the SDKs read the tools' annotations, and the
# types they name are imported inside build().

import argparse
import base64
from collections import Counter

from pydantic import BaseModel

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
counts: Counter[str] = Counter()


class Structured(BaseModel):
    n: int
    word: str


def build(sdk: str, mode: str, port: int):
    if sdk == "mcp":
        from mcp.server.fastmcp import Context, FastMCP, Image
        from mcp.server.fastmcp.exceptions import ToolError

        server = FastMCP(
            "interop-py-mcp1",
            host="127.0.0.1",
            port=port,
            stateless_http=mode == "stateless",
            json_response=mode == "json",
        )
    else:
        from fastmcp import Context, FastMCP
        from fastmcp.exceptions import ToolError
        from fastmcp.utilities.types import Image

        server = FastMCP("interop-fastmcp")

    @server.tool()
    def echo(text: str, key: str | None = None) -> str:
        """Echoes the text back"""
        if key:
            counts[key] += 1
        return f"echo: {text}"

    @server.tool()
    def fail() -> str:
        """Always fails"""
        raise ToolError("deliberate failure")

    @server.tool()
    def image() -> Image:
        """A 1x1 PNG"""
        return Image(data=PNG, format="png")

    @server.tool()
    def structured() -> Structured:
        """Structured content with an output schema"""
        return Structured(n=42, word="interop")

    @server.tool()
    async def progress(steps: int, ctx: Context) -> str:
        """Reports progress, then answers"""
        import anyio

        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"step {step}")
            await anyio.sleep(0.02)
        return f"done after {steps} steps"

    @server.tool()
    def size(data: str) -> str:
        """The length of its argument"""
        return str(len(data))

    @server.tool()
    def big(length: int, key: str | None = None) -> str:
        """Answers with a text of the given length"""
        if key:
            counts[key] += 1
        return "x" * length

    @server.tool()
    def calls(key: str) -> str:
        """How often calls with this key ran"""
        return str(counts[key])

    state = {"extra": False}

    def extra_tool() -> str:
        """Comes and goes"""
        return "extra"

    @server.tool()
    async def toggle_extra(ctx: Context) -> str:
        """Adds or removes the tool extra_tool"""
        if state["extra"]:
            server.remove_tool("extra_tool")
        else:
            server.add_tool(extra_tool) if sdk == "fastmcp" else server.add_tool(
                extra_tool, name="extra_tool"
            )
        state["extra"] = not state["extra"]
        if sdk == "mcp":  # fastmcp sends it itself when the tool set changes
            await ctx.session.send_tool_list_changed()
        return "added" if state["extra"] else "removed"

    @server.resource("interop://static/readme", mime_type="text/plain")
    def readme() -> str:
        """A static text"""
        return "interop readme"

    @server.prompt()
    def greet(name: str) -> str:
        """Greets someone"""
        return f"Hello, {name}!"

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sdk", choices=["mcp", "fastmcp"], required=True)
    parser.add_argument(
        "--mode", choices=["default", "stateless", "json", "sse"], default="default"
    )
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = build(args.sdk, args.mode, args.port)
    if args.sdk == "mcp":
        server.run(transport="sse" if args.mode == "sse" else "streamable-http")
    else:
        server.run(
            transport="sse" if args.mode == "sse" else "http",
            host="127.0.0.1",
            port=args.port,
            show_banner=False,
            stateless_http=args.mode == "stateless",
            json_response=args.mode == "json",
        )


if __name__ == "__main__":
    main()
