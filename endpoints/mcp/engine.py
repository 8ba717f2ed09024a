"""Answer MCP JSON-RPC requests for one endpoint, in both protocol eras.

The engine knows the protocol; it knows nothing of HTTP, Django or upstream
sessions. ``ServedView`` is what an endpoint serves (built from the catalog
and the toggles, cached by the caller); ``Backend`` forwards the calls that
must reach an upstream server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from endpoints.mcp import jsonrpc
from endpoints.mcp.jsonrpc import ProtocolError

LIST_TTL_MS = 60_000


@dataclass(frozen=True)
class Route:
    """Where a public tool, prompt or resource lives upstream."""

    connection_id: str
    upstream_name: str  # tool or prompt name, or resource URI
    server_label: str  # the connection's name, for messages


@dataclass(frozen=True)
class ServedView:
    """Everything an endpoint serves, ready to send: lists are prebuilt JSON."""

    endpoint_id: str
    name: str
    version: str
    instructions: str
    tools: tuple[dict[str, Any], ...] = ()
    tool_routes: Mapping[str, Route] = field(default_factory=dict)
    resources: tuple[dict[str, Any], ...] = ()
    resource_templates: tuple[dict[str, Any], ...] = ()
    prompts: tuple[dict[str, Any], ...] = ()
    prompt_routes: Mapping[str, Route] = field(default_factory=dict)
    template_routes: Mapping[str, Route] = field(default_factory=dict)
    resolve_resource: Callable[[str], Route | None] = lambda uri: None
    # Redact personal data in results (the activity log's PII filter, issue 7).
    pii_filter: bool = False


ProgressSink = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class CallContext:
    """One request as the engine sees it."""

    view: ServedView
    protocol_version: str
    principal: Any = None
    session_id: str | None = None
    client_info: Mapping[str, Any] | None = None
    request_id: Any = None
    # Sends a notification on the request's response stream (progress); None when
    # the response cannot carry notifications.
    notify: ProgressSink | None = None
    # Set by the backend for the activity log (issue 7): where the call went, how long it took.
    route: Route | None = None
    upstream_seconds: float | None = None
    # The upstream failure the backend turned into the client's short message; its
    # precise description (``detail``) is kept in the activity record for admins.
    upstream_error: Exception | None = None

    @property
    def modern(self) -> bool:
        return self.protocol_version in jsonrpc.MODERN_VERSIONS


class Backend(Protocol):
    """Forwards calls to upstream servers; raises ``ProtocolError`` for JSON-RPC errors."""

    async def call_tool(
        self,
        ctx: CallContext,
        route: Route,
        arguments: dict[str, Any] | None,
        meta: dict[str, Any] | None,
    ) -> dict[str, Any]: ...

    async def read_resource(self, ctx: CallContext, route: Route, uri: str) -> dict[str, Any]: ...

    async def get_prompt(
        self, ctx: CallContext, route: Route, arguments: dict[str, str] | None
    ) -> dict[str, Any]: ...

    async def complete(
        self, ctx: CallContext, route: Route, params: dict[str, Any]
    ) -> dict[str, Any]: ...


# Keys a 2026-07-28 upstream puts on results that an older client must not see.
_MODERN_ONLY_KEYS = ("resultType", "ttlMs", "cacheScope")


class Engine:
    """Dispatches one JSON-RPC request to the method that answers it."""

    def __init__(self, backend: Backend, *, server_version: str) -> None:
        self.backend = backend
        self.server_version = server_version
        self._methods: dict[
            str, Callable[[CallContext, dict[str, Any]], Awaitable[dict[str, Any]]]
        ] = {
            "initialize": self._initialize,
            "server/discover": self._discover,
            "ping": self._ping,
            "tools/list": self._tools_list,
            "tools/call": self._tools_call,
            "resources/list": self._resources_list,
            "resources/templates/list": self._templates_list,
            "resources/read": self._resources_read,
            "prompts/list": self._prompts_list,
            "prompts/get": self._prompts_get,
            "completion/complete": self._complete,
            "logging/setLevel": self._ping,
        }

    def knows(self, method: str) -> bool:
        return method in self._methods

    async def handle(self, ctx: CallContext, request: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """The JSON-RPC response (result or error) to one request, and its HTTP status."""
        request_id = request.get("id")
        ctx.request_id = request_id
        method = request["method"]
        params = request.get("params")
        if params is None:
            params = {}
        try:
            if not isinstance(params, dict):
                raise ProtocolError(jsonrpc.INVALID_PARAMS, "params must be an object")
            handler = self._methods.get(method)
            if handler is None or not self._available(ctx, method):
                raise ProtocolError(
                    jsonrpc.METHOD_NOT_FOUND,
                    f"Method not found: {method}",
                    http_status=404 if ctx.modern else 200,
                )
            result = await handler(ctx, params)
        except ProtocolError as failure:
            status = 200
            if ctx.modern:
                # An upstream's error arrives with the default status; the codes the
                # 2026-07-28 transport pins (e.g. -32021 -> 400) keep their status.
                status = failure.http_status
                if status == 200:
                    status = jsonrpc.PINNED_HTTP_STATUS.get(failure.code, 200)
            return jsonrpc.error(request_id, failure.code, failure.message, failure.data), status
        return jsonrpc.response(request_id, self._finish(ctx, method, result)), 200

    def _available(self, ctx: CallContext, method: str) -> bool:
        if ctx.modern:
            return method not in ("initialize", "ping", "logging/setLevel")
        return method != "server/discover"

    def _finish(self, ctx: CallContext, method: str, result: dict[str, Any]) -> dict[str, Any]:
        if ctx.modern:
            result.setdefault("resultType", "complete")
            meta = result.get("_meta")
            stamp = {"name": ctx.view.name, "version": self.server_version}
            result["_meta"] = (
                {**meta, jsonrpc.META_SERVER_INFO: stamp}
                if isinstance(meta, dict)
                else {jsonrpc.META_SERVER_INFO: stamp}
            )
            return result
        for key in _MODERN_ONLY_KEYS:
            result.pop(key, None)
        meta = result.get("_meta")
        if isinstance(meta, dict) and jsonrpc.META_SERVER_INFO in meta:
            rest = {k: v for k, v in meta.items() if k != jsonrpc.META_SERVER_INFO}
            if rest:
                result["_meta"] = rest
            else:
                del result["_meta"]
        return result

    # --- lifecycle -----------------------------------------------------------------

    def _capabilities(self) -> dict[str, Any]:
        return {
            "tools": {"listChanged": True},
            "resources": {"listChanged": True},
            "prompts": {"listChanged": True},
            "completions": {},
            "logging": {},
        }

    def _server_info(self, view: ServedView) -> dict[str, Any]:
        return {"name": view.name, "version": self.server_version}

    async def _initialize(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "protocolVersion": ctx.protocol_version,
            "capabilities": self._capabilities(),
            "serverInfo": self._server_info(ctx.view),
        }
        if ctx.view.instructions:
            result["instructions"] = ctx.view.instructions
        return result

    async def _discover(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        capabilities = self._capabilities()
        capabilities.pop("logging")
        result: dict[str, Any] = {
            "supportedVersions": list(jsonrpc.SUPPORTED_VERSIONS),
            "capabilities": capabilities,
            "serverInfo": self._server_info(ctx.view),
            "ttlMs": LIST_TTL_MS,
            "cacheScope": "private",
        }
        if ctx.view.instructions:
            result["instructions"] = ctx.view.instructions
        return result

    async def _ping(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    # --- lists, served from the view ------------------------------------------------------

    def _page(
        self, ctx: CallContext, params: dict[str, Any], key: str, items: tuple[Any, ...]
    ) -> dict[str, Any]:
        cursor = params.get("cursor")
        if cursor not in (None, ""):
            raise ProtocolError(jsonrpc.INVALID_PARAMS, "Unknown cursor")
        result: dict[str, Any] = {key: list(items)}
        if ctx.modern:
            result["ttlMs"] = LIST_TTL_MS
            result["cacheScope"] = "private"
        return result

    async def _tools_list(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        return self._page(ctx, params, "tools", ctx.view.tools)

    async def _resources_list(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        return self._page(ctx, params, "resources", ctx.view.resources)

    async def _templates_list(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        return self._page(ctx, params, "resourceTemplates", ctx.view.resource_templates)

    async def _prompts_list(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        return self._page(ctx, params, "prompts", ctx.view.prompts)

    # --- calls, forwarded --------------------------------------------------------------

    async def _tools_call(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        if not isinstance(name, str):
            raise ProtocolError(jsonrpc.INVALID_PARAMS, "tools/call needs a tool name")
        route = ctx.view.tool_routes.get(name)
        if route is None:
            raise ProtocolError(jsonrpc.INVALID_PARAMS, f"Unknown tool: {name}", http_status=200)
        arguments = params.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise ProtocolError(jsonrpc.INVALID_PARAMS, "arguments must be an object")
        meta = params.get("_meta")
        return await self.backend.call_tool(
            ctx, route, arguments, meta if isinstance(meta, dict) else None
        )

    async def _resources_read(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise ProtocolError(jsonrpc.INVALID_PARAMS, "resources/read needs a uri")
        route = ctx.view.resolve_resource(uri)
        if route is None:
            raise ProtocolError(
                jsonrpc.INVALID_PARAMS if ctx.modern else -32002,
                f"Resource not found: {uri}",
                {"uri": uri},
            )
        return await self.backend.read_resource(ctx, route, uri)

    async def _prompts_get(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        if not isinstance(name, str):
            raise ProtocolError(jsonrpc.INVALID_PARAMS, "prompts/get needs a prompt name")
        route = ctx.view.prompt_routes.get(name)
        if route is None:
            raise ProtocolError(jsonrpc.INVALID_PARAMS, f"Unknown prompt: {name}")
        arguments = params.get("arguments")
        if arguments is not None and not (
            isinstance(arguments, dict) and all(isinstance(v, str) for v in arguments.values())
        ):
            raise ProtocolError(jsonrpc.INVALID_PARAMS, "prompt arguments must be strings")
        return await self.backend.get_prompt(ctx, route, arguments)

    async def _complete(self, ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = params.get("ref")
        if not isinstance(ref, dict):
            raise ProtocolError(jsonrpc.INVALID_PARAMS, "completion/complete needs a ref")
        route: Route | None = None
        if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
            route = ctx.view.prompt_routes.get(ref["name"])
        elif ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
            route = ctx.view.template_routes.get(ref["uri"]) or ctx.view.resolve_resource(
                ref["uri"]
            )
        if route is None:
            return {"completion": {"values": [], "hasMore": False}}
        return await self.backend.complete(ctx, route, params)
