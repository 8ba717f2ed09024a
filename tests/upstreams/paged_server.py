"""A test upstream MCP server written with the SDK's low-level Server.

``python -m tests.upstreams.paged_server PORT [--token T] [--tools N] [--handshake-only]``

- ``--handshake-only`` refuses ``server/discover``, like a server of the 2025 revisions,
  so clients fall back to the ``initialize`` handshake;

- ``--tools N`` tools (default 25), listed in pages of 10, so clients must follow cursors;
- ``whoami`` echoes the Authorization and X-* headers it received;
- ``slow`` sleeps ``seconds`` before answering;
- any ``tool_NN`` called with an ``echo`` argument answers with that text;
- ``--token T`` answers 401 to any request without ``Authorization: Bearer T``;
- a resource, a resource template and a prompt; instructions;
- ``grow`` adds a tool and announces it (``notifications/tools/list_changed`` in the
  handshake era, a ``subscriptions/listen`` event in 2026-07-28);
- ``/stats`` (plain HTTP) counts the MCP sessions opened, requests seen, tool calls and
  the most tool calls in flight at once.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio
import mcp_types as types
import uvicorn
from mcp.server import Server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.exceptions import MCPError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

PAGE = 10
STATS: dict[str, int] = {
    "initialize": 0,
    "requests": 0,
    "tool_calls": 0,
    "in_flight": 0,
    "max_in_flight": 0,
}


def build(tool_count: int) -> Server[Any]:
    names = [f"tool_{i:02d}" for i in range(tool_count)] + ["whoami", "slow", "grow", "count"]
    bus = InMemorySubscriptionBus()

    def tool(name: str) -> types.Tool:
        return types.Tool(
            name=name,
            description=f"The {name} tool.",
            input_schema={"type": "object", "properties": {"seconds": {"type": "number"}}},
        )

    async def list_tools(
        ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        start = int(params.cursor) if params and params.cursor else 0
        page = names[start : start + PAGE]
        more = start + PAGE < len(names)
        return types.ListToolsResult(
            tools=[tool(n) for n in page], next_cursor=str(start + PAGE) if more else None
        )

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        STATS["tool_calls"] += 1
        STATS["in_flight"] += 1
        STATS["max_in_flight"] = max(STATS["max_in_flight"], STATS["in_flight"])
        try:
            return await answer(ctx, params)
        finally:
            STATS["in_flight"] -= 1

    async def answer(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name == "grow":
            names.insert(0, f"grown_{len(names)}")
            await bus.publish(ToolsListChanged())
            if ctx.protocol_version != "2026-07-28":
                await ctx.session.send_tool_list_changed()
            return types.CallToolResult(content=[types.TextContent(type="text", text=names[0])])
        if params.name == "count":
            token = (ctx.meta or {}).get("progress_token")
            for step in (1, 2, 3):
                if token is not None:
                    await ctx.session.send_progress_notification(
                        token, step, 3, f"step {step}", related_request_id=ctx.request_id
                    )
                await anyio.sleep(0.05)
            return types.CallToolResult(
                content=[types.TextContent(type="text", text="counted to 3")],
                structured_content={"counted": 3},
            )
        if params.name not in names:
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=f"Unknown tool: {params.name}")],
                is_error=True,
            )
        if params.name == "whoami":
            headers = dict(ctx.request.headers) if ctx.request is not None else {}
            seen = {k: v for k, v in headers.items() if k == "authorization" or k.startswith("x-")}
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=json.dumps(seen))]
            )
        if params.name == "slow":
            await anyio.sleep(float((params.arguments or {}).get("seconds", 5)))
        echo = (params.arguments or {}).get("echo")
        if echo is not None:
            # The activity log's tests plant secrets and personal data in results this way.
            return types.CallToolResult(content=[types.TextContent(type="text", text=str(echo))])
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=f"{params.name} ok")]
        )

    async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[types.Resource(uri="memo://readme", name="readme")]
        )

    async def list_templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[types.ResourceTemplate(uri_template="memo://{name}", name="memo")]
        )

    async def list_prompts(ctx: Any, params: Any) -> types.ListPromptsResult:
        return types.ListPromptsResult(
            prompts=[
                types.Prompt(
                    name="summarise",
                    description="Summarise a memo",
                    arguments=[types.PromptArgument(name="memo", required=True)],
                )
            ]
        )

    async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> Any:
        uri = str(params.uri)
        if not uri.startswith("memo://") or uri == "memo://nothing-here":
            raise MCPError(code=-32602, message=f"Resource not found: {uri}")
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, text=f"memo {uri[7:]}")]
        )

    async def get_prompt(ctx: Any, params: types.GetPromptRequestParams) -> Any:
        memo = (params.arguments or {}).get("memo", "")
        return types.GetPromptResult(
            description="Summarise a memo",
            messages=[
                types.PromptMessage(
                    role="user", content=types.TextContent(type="text", text=f"Summarise: {memo}")
                )
            ],
        )

    async def complete(ctx: Any, params: types.CompleteRequestParams) -> Any:
        prefix = params.argument.value
        values = [v for v in ("alpha", "beta", "alphabet") if v.startswith(prefix)]
        return types.CompleteResult(
            completion=types.Completion(values=values, total=len(values), has_more=False)
        )

    return Server(
        "paged-test-server",
        version="9.9.9",
        instructions="Test upstream: use whoami to see your headers.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_list_prompts=list_prompts,
        on_read_resource=read_resource,
        on_get_prompt=get_prompt,
        on_completion=complete,
        on_subscriptions_listen=ListenHandler(bus),
    )


class Gate:
    """Counts traffic, serves /stats, and enforces the bearer token when one is set."""

    def __init__(self, app: ASGIApp, token: str | None, *, handshake_only: bool = False) -> None:
        self.app, self.token, self.handshake_only = app, token, handshake_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        if request.url.path == "/stats":
            return await JSONResponse(STATS)(scope, receive, send)
        STATS["requests"] += 1
        if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
            return await Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})(
                scope, receive, send
            )
        if request.method == "POST":
            body = b""
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            compact = body.replace(b" ", b"")
            discover = b'"method":"server/discover"' in compact
            if self.handshake_only and discover:
                # Like a server of the 2025 revisions: no server/discover.
                request_id = json.loads(body).get("id")
                error = {"code": -32601, "message": "Method not found"}
                return await JSONResponse({"jsonrpc": "2.0", "id": request_id, "error": error})(
                    scope, receive, send
                )
            if b'"method":"initialize"' in compact or discover:
                STATS["initialize"] += 1
            sent = False

            async def replay() -> Any:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            return await self.app(scope, replay, send)
        return await self.app(scope, receive, send)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--token")
    parser.add_argument("--tools", type=int, default=25)
    parser.add_argument("--handshake-only", action="store_true")
    args = parser.parse_args()
    server = build(args.tools)
    app = server.streamable_http_app()
    gate = Gate(app, args.token, handshake_only=args.handshake_only)
    uvicorn.run(gate, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
