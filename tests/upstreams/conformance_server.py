"""The upstream behind the conformance run: the fixture tools, resources and prompts that
the server scenarios of ``@modelcontextprotocol/conformance`` call, by their exact names.

``python -m tests.upstreams.conformance_server PORT``

The suite talks to the *gateway*; the gateway federates this server with names unprefixed
(the endpoint's ``prefix_names`` off), so every scenario reaches these fixtures through the
gateway's transport, catalog and upstream pool. Written on the SDK's low-level ``Server``
so the listed schemas are exactly the ones below (the JSON Schema 2020-12 fixture must
survive verbatim). Both eras: the SDK serves ``initialize`` and ``server/discover``.

What the scenarios expect, in short (the suite's scenario descriptions are the reference):

- content tools: ``test_simple_text``, ``test_image_content``, ``test_audio_content``,
  ``test_embedded_resource``, ``test_multiple_content_types``, ``test_error_handling``
  (``isError``), ``test_tool_with_progress`` (0, 50, 100 of 100), ``test_tool_with_logging``
  (three info logs), ``json_schema_2020_12_tool`` (schema keywords preserved);
- server-to-client requests in the handshake era: ``test_sampling``, ``test_elicitation``,
  ``test_elicitation_sep1034_defaults``, ``test_elicitation_sep1330_enums``;
- 2026-07-28 diagnostics: ``test_missing_capability`` (-32021 unless the client declared
  ``sampling``), ``test_logging_tool`` (logs only when the request opted in),
  ``test_streaming_elicitation``, ``test_trigger_tool_change`` /
  ``test_trigger_prompt_change`` (really change the lists and announce it),
  ``test_x_mcp_header`` (an ``x-mcp-header`` parameter);
- multi-round-trip (``InputRequiredResult``) tools ``test_input_required_result_*`` and the
  prompt ``test_input_required_result_prompt``; request states are HMAC-signed, so a
  tampered one is refused with -32602;
- resources ``test://static-text``, ``test://static-binary``, ``test://watched-resource``,
  the template ``test://template/{id}/data``; prompts ``test_simple_prompt``,
  ``test_prompt_with_arguments``, ``test_prompt_with_embedded_resource``,
  ``test_prompt_with_image``; completion for prompt arguments and the template's ``id``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import json
import secrets
import struct
import wave
import zlib
from typing import Any

import anyio
import mcp_types as types
import uvicorn
from mcp.server import Server
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError

MODERN = "2026-07-28"


def _png_1x1() -> str:
    """A valid 1x1 red PNG, built here rather than pasted as an opaque string."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte, then one red pixel
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
    return base64.b64encode(png + chunk(b"IEND", b"")).decode()


def _wav_silence() -> str:
    """A valid, very short mono 8 kHz WAV (ten samples of silence)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 10)
    return base64.b64encode(buffer.getvalue()).decode()


PNG = _png_1x1()
WAV = _wav_silence()
STATE_KEY = secrets.token_bytes(32)

# The schema the json-schema-2020-12 scenario documents: every keyword must survive listing.
JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

NAME_FORM = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def _schema(properties: dict[str, Any] | None = None, required: list[str] | None = None) -> Any:
    schema: dict[str, Any] = {"type": "object", "properties": properties or {}}
    if required:
        schema["required"] = required
    return schema


STATIC_TOOLS: list[tuple[str, str, dict[str, Any]]] = [
    ("test_simple_text", "Returns one text block.", _schema()),
    ("test_image_content", "Returns a PNG image block.", _schema()),
    ("test_audio_content", "Returns a WAV audio block.", _schema()),
    ("test_embedded_resource", "Returns an embedded text resource.", _schema()),
    ("test_multiple_content_types", "Returns text, an image and a resource.", _schema()),
    ("test_tool_with_logging", "Logs three info messages while it runs.", _schema()),
    ("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100.", _schema()),
    ("test_error_handling", "Always fails with isError.", _schema()),
    (
        "test_sampling",
        "Asks the client's model to answer a prompt (sampling/createMessage).",
        _schema({"prompt": {"type": "string", "description": "What to ask"}}, ["prompt"]),
    ),
    (
        "test_elicitation",
        "Asks the user for a username and an email (elicitation/create).",
        _schema({"message": {"type": "string", "description": "What to ask"}}, ["message"]),
    ),
    ("test_elicitation_sep1034_defaults", "Elicitation with defaults (SEP-1034).", _schema()),
    ("test_elicitation_sep1330_enums", "Elicitation with every enum form (SEP-1330).", _schema()),
    ("json_schema_2020_12_tool", "Tool with JSON Schema 2020-12 features", JSON_SCHEMA_2020_12),
    (
        "test_x_mcp_header",
        "Echoes a parameter the client mirrors in the Mcp-Param-Region header.",
        _schema(
            {"region": {"type": "string", "description": "A region", "x-mcp-header": "Region"}}
        ),
    ),
    ("test_missing_capability", "Needs the client's sampling capability.", _schema()),
    ("test_logging_tool", "Logs only when the request asked for logs.", _schema()),
    ("test_streaming_elicitation", "Streams a progress notification, then answers.", _schema()),
    ("test_trigger_tool_change", "Adds or removes test_dynamic_tool.", _schema()),
    ("test_trigger_prompt_change", "Adds or removes test_dynamic_prompt.", _schema()),
    ("test_input_required_result_elicitation", "Asks for a name (input required).", _schema()),
    ("test_input_required_result_sampling", "Asks the model a question.", _schema()),
    ("test_input_required_result_list_roots", "Asks for the client's roots.", _schema()),
    ("test_input_required_result_request_state", "Round-trips a request state.", _schema()),
    ("test_input_required_result_multiple_inputs", "Asks for three inputs at once.", _schema()),
    ("test_input_required_result_multi_round", "Asks twice, one question a round.", _schema()),
    ("test_input_required_result_tampered_state", "Refuses a tampered state.", _schema()),
    ("test_input_required_result_capabilities", "Asks only what the client can do.", _schema()),
]


class Fixture:
    """The fixture's state: which dynamic entries exist, and subscribed resource URIs."""

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self.dynamic_tool = False
        self.dynamic_prompt = False
        self.subscriptions: set[str] = set()
        self.log_level = "debug"

    # --- helpers ------------------------------------------------------------------------

    @staticmethod
    def text(text: str, *, error: bool = False) -> types.CallToolResult:
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], is_error=error
        )

    @staticmethod
    def modern(ctx: Any) -> bool:
        return bool(ctx.protocol_version == MODERN)

    @staticmethod
    def client_declares(ctx: Any, capability: str) -> bool:
        """Whether the client declared a capability (``initialize`` or the request's _meta)."""
        capabilities = ctx.session.client_capabilities
        return capabilities is not None and getattr(capabilities, capability, None) is not None

    @staticmethod
    def seal(state: dict[str, Any]) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
        mac = hmac.new(STATE_KEY, payload.encode(), hashlib.sha256).hexdigest()
        return f"{payload}.{mac}"

    @staticmethod
    def unseal(token: str | None) -> dict[str, Any] | None:
        """The state a token carries; raises -32602 for a token this server did not sign."""
        if token is None:
            return None
        payload, _, mac = token.rpartition(".")
        expected = hmac.new(STATE_KEY, payload.encode(), hashlib.sha256).hexdigest()
        if not payload or not hmac.compare_digest(mac, expected):
            raise MCPError(code=-32602, message="requestState failed its integrity check")
        state: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload))
        return state

    @staticmethod
    def answers(params: Any) -> dict[str, dict[str, Any]]:
        """The client's input responses as plain JSON, keyed like the requests."""
        raw = params.input_responses or {}
        if not isinstance(raw, dict):
            raise MCPError(code=-32602, message="inputResponses must be an object")
        out: dict[str, dict[str, Any]] = {}
        for key, value in raw.items():
            dumped = value.model_dump(by_alias=True, exclude_none=True, mode="json")
            out[key] = dumped if isinstance(dumped, dict) else {}
        return out

    @staticmethod
    def needs(
        requests: dict[str, dict[str, Any]], state: dict[str, Any] | None = None
    ) -> types.InputRequiredResult:
        body: dict[str, Any] = {"resultType": "input_required", "inputRequests": requests}
        if state is not None:
            body["requestState"] = Fixture.seal(state)
        return types.InputRequiredResult.model_validate(body)

    @staticmethod
    def elicit(message: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "method": "elicitation/create",
            "params": {"mode": "form", "message": message, "requestedSchema": schema},
        }

    @staticmethod
    def sample(text: str, max_tokens: int) -> dict[str, Any]:
        return {
            "method": "sampling/createMessage",
            "params": {
                "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
                "maxTokens": max_tokens,
            },
        }

    # --- tools ----------------------------------------------------------------------------

    async def list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        tools = [
            types.Tool.model_validate({"name": n, "description": d, "inputSchema": s})
            for n, d, s in STATIC_TOOLS
        ]
        if self.dynamic_tool:
            tools.append(
                types.Tool(
                    name="test_dynamic_tool",
                    description="Added at run time.",
                    input_schema=_schema(),
                )
            )
        return types.ListToolsResult(tools=tools)

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> Any:
        handler = getattr(self, f"tool_{params.name}", None)
        if handler is None:
            raise MCPError(code=-32602, message=f"Unknown tool: {params.name}")
        return await handler(ctx, params)

    async def tool_test_simple_text(self, ctx: Any, params: Any) -> Any:
        return self.text("This is a simple text response for testing.")

    async def tool_test_image_content(self, ctx: Any, params: Any) -> Any:
        return types.CallToolResult(
            content=[types.ImageContent(type="image", data=PNG, mime_type="image/png")]
        )

    async def tool_test_audio_content(self, ctx: Any, params: Any) -> Any:
        return types.CallToolResult(
            content=[types.AudioContent(type="audio", data=WAV, mime_type="audio/wav")]
        )

    async def tool_test_embedded_resource(self, ctx: Any, params: Any) -> Any:
        resource = types.TextResourceContents(
            uri="test://embedded-resource",
            mime_type="text/plain",
            text="This is an embedded resource content.",
        )
        return types.CallToolResult(
            content=[types.EmbeddedResource(type="resource", resource=resource)]
        )

    async def tool_test_multiple_content_types(self, ctx: Any, params: Any) -> Any:
        resource = types.TextResourceContents(
            uri="test://mixed-content-resource",
            mime_type="application/json",
            text=json.dumps({"test": "data", "value": 123}),
        )
        return types.CallToolResult(
            content=[
                types.TextContent(type="text", text="Multiple content types test:"),
                types.ImageContent(type="image", data=PNG, mime_type="image/png"),
                types.EmbeddedResource(type="resource", resource=resource),
            ]
        )

    async def tool_test_tool_with_logging(self, ctx: Any, params: Any) -> Any:
        for step, text in enumerate(
            ("Tool execution started", "Tool processing data", "Tool execution completed")
        ):
            if step:
                await anyio.sleep(0.05)
            await ctx.session.send_log_message(
                "info", text, logger="conformance", related_request_id=ctx.request_id
            )
        return self.text("Tool with logging executed successfully")

    async def tool_test_tool_with_progress(self, ctx: Any, params: Any) -> Any:
        for step, progress in enumerate((0, 50, 100)):
            if step:
                await anyio.sleep(0.05)
            # A no-op when the request carried no progress token.
            await ctx.session.report_progress(progress, 100)
        return self.text("Progress reported: 0, 50 and 100 of 100")

    async def tool_test_error_handling(self, ctx: Any, params: Any) -> Any:
        return self.text("This tool intentionally returns an error for testing", error=True)

    async def tool_test_sampling(self, ctx: Any, params: Any) -> Any:
        prompt = str((params.arguments or {}).get("prompt", ""))
        if not self.client_declares(ctx, "sampling"):
            return self.text("The client does not support sampling.", error=True)
        result = await ctx.session.create_message(
            messages=[
                types.SamplingMessage(
                    role="user", content=types.TextContent(type="text", text=prompt)
                )
            ],
            max_tokens=100,
            related_request_id=ctx.request_id,
        )
        content = result.content
        text = content.text if getattr(content, "type", "") == "text" else "(no text)"
        return self.text(f"LLM response: {text}")

    async def _elicit_tool(self, ctx: Any, message: str, schema: dict[str, Any], label: str) -> Any:
        if not self.client_declares(ctx, "elicitation"):
            return self.text("The client does not support elicitation.", error=True)
        result = await ctx.session.elicit(
            message=message,
            requested_schema=schema,
            related_request_id=ctx.request_id,
        )
        return self.text(
            f"{label}: action={result.action}, content={json.dumps(result.content or {})}"
        )

    async def tool_test_elicitation(self, ctx: Any, params: Any) -> Any:
        schema = _schema(
            {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            },
            ["username", "email"],
        )
        message = str((params.arguments or {}).get("message", ""))
        return await self._elicit_tool(ctx, message, schema, "User response")

    async def tool_test_elicitation_sep1034_defaults(self, ctx: Any, params: Any) -> Any:
        schema = _schema(
            {
                "name": {"type": "string", "default": "John Doe"},
                "age": {"type": "integer", "default": 30},
                "score": {"type": "number", "default": 95.5},
                "status": {
                    "type": "string",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active",
                },
                "verified": {"type": "boolean", "default": True},
            }
        )
        return await self._elicit_tool(
            ctx, "Please review the defaults", schema, "Elicitation completed"
        )

    async def tool_test_elicitation_sep1330_enums(self, ctx: Any, params: Any) -> Any:
        def titled(prefix: str, titles: tuple[str, ...]) -> list[dict[str, str]]:
            return [{"const": f"{prefix}{i}", "title": t} for i, t in enumerate(titles, 1)]

        schema = _schema(
            {
                "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                "titledSingle": {
                    "type": "string",
                    "oneOf": titled("value", ("First Option", "Second Option", "Third Option")),
                },
                "legacyEnum": {
                    "type": "string",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"],
                },
                "untitledMulti": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
                },
                "titledMulti": {
                    "type": "array",
                    "items": {
                        "anyOf": titled("value", ("First Choice", "Second Choice", "Third Choice"))
                    },
                },
            }
        )
        return await self._elicit_tool(ctx, "Pick some options", schema, "Elicitation completed")

    async def tool_json_schema_2020_12_tool(self, ctx: Any, params: Any) -> Any:
        return self.text(f"Received {json.dumps(params.arguments or {}, sort_keys=True)}")

    async def tool_test_x_mcp_header(self, ctx: Any, params: Any) -> Any:
        return self.text(f"region={(params.arguments or {}).get('region', '<none>')}")

    async def tool_test_missing_capability(self, ctx: Any, params: Any) -> Any:
        if not self.client_declares(ctx, "sampling"):
            raise MCPError(
                code=-32021,
                message="This tool needs the client's sampling capability",
                data={"requiredCapabilities": {"sampling": {}}},
            )
        return self.text("The client declared sampling.")

    async def tool_test_logging_tool(self, ctx: Any, params: Any) -> Any:
        # The SDK drops the message unless this request opted in (2026-07-28) — the point.
        await ctx.session.send_log_message(
            "info", "Diagnostic trace logging activated", related_request_id=ctx.request_id
        )
        return self.text("Logging evaluated")

    async def tool_test_streaming_elicitation(self, ctx: Any, params: Any) -> Any:
        await ctx.session.report_progress(50, 100)
        return self.text("Streaming complete")

    async def tool_test_trigger_tool_change(self, ctx: Any, params: Any) -> Any:
        self.dynamic_tool = not self.dynamic_tool
        await self.bus.publish(ToolsListChanged())
        if not self.modern(ctx):
            await ctx.session.send_tool_list_changed()
        return self.text("Mutation triggered")

    async def tool_test_trigger_prompt_change(self, ctx: Any, params: Any) -> Any:
        self.dynamic_prompt = not self.dynamic_prompt
        await self.bus.publish(PromptsListChanged())
        if not self.modern(ctx):
            await ctx.session.send_prompt_list_changed()
        return self.text("Mutation triggered")

    async def tool_test_dynamic_tool(self, ctx: Any, params: Any) -> Any:
        if not self.dynamic_tool:
            raise MCPError(code=-32602, message="Unknown tool: test_dynamic_tool")
        return self.text("The dynamic tool answers.")

    # --- multi-round trip (2026-07-28 InputRequiredResult) ----------------------------------

    async def tool_test_input_required_result_elicitation(self, ctx: Any, params: Any) -> Any:
        answers = self.answers(params)
        answer = answers.get("user_name")
        if answer is None:
            return self.needs({"user_name": self.elicit("What is your name?", NAME_FORM)})
        content = answer.get("content")
        if not isinstance(content, dict) or not isinstance(content.get("name"), str):
            return self.needs({"user_name": self.elicit("What is your name?", NAME_FORM)})
        return self.text(f"Hello, {content['name']}!")

    async def tool_test_input_required_result_sampling(self, ctx: Any, params: Any) -> Any:
        answer = self.answers(params).get("capital_question")
        if answer is None:
            return self.needs(
                {"capital_question": self.sample("What is the capital of France?", 100)}
            )
        content = answer.get("content") or {}
        text = content.get("text", "") if isinstance(content, dict) else ""
        return self.text(f"The model answered: {text}")

    async def tool_test_input_required_result_list_roots(self, ctx: Any, params: Any) -> Any:
        answer = self.answers(params).get("client_roots")
        if answer is None:
            return self.needs({"client_roots": {"method": "roots/list", "params": {}}})
        roots = [str(root.get("uri")) for root in answer.get("roots") or []]
        return self.text(f"The client has {len(roots)} root(s): {', '.join(roots)}")

    async def tool_test_input_required_result_request_state(self, ctx: Any, params: Any) -> Any:
        state = self.unseal(params.request_state)
        answer = self.answers(params).get("confirm")
        if answer is None or state is None or state.get("step") != "confirm":
            schema = _schema({"ok": {"type": "boolean"}}, ["ok"])
            return self.needs(
                {"confirm": self.elicit("Please confirm", schema)}, {"step": "confirm"}
            )
        return self.text(f"state-ok: confirmed={json.dumps(answer.get('content'))}")

    async def tool_test_input_required_result_multiple_inputs(self, ctx: Any, params: Any) -> Any:
        state = self.unseal(params.request_state)
        answers = self.answers(params)
        keys = ("user_name", "greeting", "client_roots")
        if state is None or not all(key in answers for key in keys):
            return self.needs(
                {
                    "user_name": self.elicit("What is your name?", NAME_FORM),
                    "greeting": self.sample("Generate a greeting", 50),
                    "client_roots": {"method": "roots/list", "params": {}},
                },
                {"step": "all"},
            )
        return self.text(f"Received all of: {', '.join(keys)}")

    async def tool_test_input_required_result_multi_round(self, ctx: Any, params: Any) -> Any:
        state = self.unseal(params.request_state) or {}
        answers = self.answers(params)
        if state.get("round") == 2 and "step2" in answers:
            color = (answers["step2"].get("content") or {}).get("color", "?")
            return self.text(f"Multi-round complete for {state.get('name')} who likes {color}")
        if state.get("round") == 1 and "step1" in answers:
            name = (answers["step1"].get("content") or {}).get("name", "?")
            schema = _schema({"color": {"type": "string"}}, ["color"])
            return self.needs(
                {"step2": self.elicit("Step 2: What is your favorite color?", schema)},
                {"round": 2, "name": name},
            )
        return self.needs(
            {"step1": self.elicit("Step 1: What is your name?", NAME_FORM)}, {"round": 1}
        )

    async def tool_test_input_required_result_tampered_state(self, ctx: Any, params: Any) -> Any:
        state = self.unseal(params.request_state)
        if state is None:
            return self.needs(
                {"confirm": self.elicit("Please confirm", NAME_FORM)}, {"step": "sealed"}
            )
        return self.text("The request state was intact.")

    async def tool_test_input_required_result_capabilities(self, ctx: Any, params: Any) -> Any:
        answers = self.answers(params)
        if answers:
            return self.text(f"Received: {', '.join(sorted(answers))}")
        requests: dict[str, dict[str, Any]] = {}
        if self.client_declares(ctx, "sampling"):
            requests["question"] = self.sample("Say hello", 20)
        if self.client_declares(ctx, "elicitation"):
            requests["user_name"] = self.elicit("What is your name?", NAME_FORM)
        if self.client_declares(ctx, "roots"):
            requests["client_roots"] = {"method": "roots/list", "params": {}}
        if not requests:
            return self.text("The client declared no capability to ask with.")
        return self.needs(requests)

    # --- resources ------------------------------------------------------------------------

    async def list_resources(self, ctx: Any, params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    uri="test://static-text",
                    name="static-text",
                    description="A static text resource",
                    mime_type="text/plain",
                ),
                types.Resource(
                    uri="test://static-binary",
                    name="static-binary",
                    description="A static binary resource (a PNG image)",
                    mime_type="image/png",
                ),
                types.Resource(
                    uri="test://watched-resource",
                    name="watched-resource",
                    description="A resource clients may subscribe to",
                    mime_type="text/plain",
                ),
            ]
        )

    async def list_templates(self, ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    uri_template="test://template/{id}/data",
                    name="template-data",
                    description="Data for one id",
                    mime_type="application/json",
                )
            ]
        )

    async def read_resource(self, ctx: Any, params: types.ReadResourceRequestParams) -> Any:
        uri = str(params.uri)
        texts = {
            "test://static-text": "This is the content of the static text resource.",
            "test://watched-resource": "Watched resource content",
        }
        item: types.TextResourceContents | types.BlobResourceContents
        prefix, suffix = "test://template/", "/data"
        if uri in texts:
            item = types.TextResourceContents(uri=uri, mime_type="text/plain", text=texts[uri])
        elif uri == "test://static-binary":
            item = types.BlobResourceContents(uri=uri, mime_type="image/png", blob=PNG)
        elif uri.startswith(prefix) and uri.endswith(suffix) and len(uri) > len(prefix + suffix):
            key = uri[len(prefix) : -len(suffix)]
            body = {"id": key, "templateTest": True, "data": f"Data for ID: {key}"}
            item = types.TextResourceContents(
                uri=uri, mime_type="application/json", text=json.dumps(body)
            )
        else:
            raise MCPError(code=-32602, message="Resource not found", data={"uri": uri})
        return types.ReadResourceResult(contents=[item])

    async def subscribe(self, ctx: Any, params: types.SubscribeRequestParams) -> Any:
        self.subscriptions.add(str(params.uri))
        return types.EmptyResult()

    async def unsubscribe(self, ctx: Any, params: types.UnsubscribeRequestParams) -> Any:
        self.subscriptions.discard(str(params.uri))
        return types.EmptyResult()

    # --- prompts ---------------------------------------------------------------------------

    async def list_prompts(self, ctx: Any, params: Any) -> types.ListPromptsResult:
        def argument(name: str, description: str) -> types.PromptArgument:
            return types.PromptArgument(name=name, description=description, required=True)

        prompts = [
            types.Prompt(name="test_simple_prompt", description="A prompt without arguments"),
            types.Prompt(
                name="test_prompt_with_arguments",
                description="A prompt with two arguments",
                arguments=[
                    argument("arg1", "First test argument"),
                    argument("arg2", "Second test argument"),
                ],
            ),
            types.Prompt(
                name="test_prompt_with_embedded_resource",
                description="A prompt that embeds a resource",
                arguments=[argument("resourceUri", "URI of the resource to embed")],
            ),
            types.Prompt(name="test_prompt_with_image", description="A prompt with an image"),
            types.Prompt(
                name="test_input_required_result_prompt",
                description="A prompt that asks the user for context first",
            ),
        ]
        if self.dynamic_prompt:
            prompts.append(
                types.Prompt(name="test_dynamic_prompt", description="Added at run time")
            )
        return types.ListPromptsResult(prompts=prompts)

    async def get_prompt(self, ctx: Any, params: types.GetPromptRequestParams) -> Any:
        args = params.arguments or {}

        def user(content: Any) -> types.PromptMessage:
            return types.PromptMessage(role="user", content=content)

        def text(value: str) -> types.TextContent:
            return types.TextContent(type="text", text=value)

        if params.name == "test_simple_prompt":
            messages = [user(text("This is a simple prompt for testing."))]
        elif params.name == "test_prompt_with_arguments":
            arg1, arg2 = args.get("arg1", ""), args.get("arg2", "")
            messages = [user(text(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))]
        elif params.name == "test_prompt_with_embedded_resource":
            resource = types.TextResourceContents(
                uri=args.get("resourceUri", "test://example-resource"),
                mime_type="text/plain",
                text="Embedded resource content for testing.",
            )
            messages = [
                user(types.EmbeddedResource(type="resource", resource=resource)),
                user(text("Please process the embedded resource above.")),
            ]
        elif params.name == "test_prompt_with_image":
            messages = [
                user(types.ImageContent(type="image", data=PNG, mime_type="image/png")),
                user(text("Please analyze the image above.")),
            ]
        elif params.name == "test_input_required_result_prompt":
            answer = self.answers(params).get("user_context")
            if answer is None:
                schema = _schema({"context": {"type": "string"}}, ["context"])
                return self.needs(
                    {"user_context": self.elicit("What context should the prompt use?", schema)}
                )
            context = (answer.get("content") or {}).get("context", "")
            messages = [user(text(f"Use this context: {context}"))]
        elif params.name == "test_dynamic_prompt" and self.dynamic_prompt:
            messages = [user(text("The dynamic prompt."))]
        else:
            raise MCPError(code=-32602, message=f"Unknown prompt: {params.name}")
        return types.GetPromptResult(messages=messages)

    async def set_level(self, ctx: Any, params: types.SetLevelRequestParams) -> Any:
        self.log_level = params.level
        return types.EmptyResult()

    # --- completion -------------------------------------------------------------------------

    async def complete(self, ctx: Any, params: types.CompleteRequestParams) -> Any:
        choices = {
            "arg1": ["hello", "help", "world"],
            "arg2": ["world", "word", "hello"],
            "id": ["123", "124", "456"],
            "resourceUri": ["test://static-text", "test://static-binary"],
        }.get(params.argument.name, [])
        values = [value for value in choices if value.startswith(params.argument.value)]
        return types.CompleteResult(
            completion=types.Completion(values=values, total=len(values), has_more=False)
        )

    def server(self) -> Server[Any]:
        return Server(
            "conformance-fixture",
            version="1.0.0",
            instructions="The conformance fixture: tools, resources and prompts named test_*.",
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_list_resources=self.list_resources,
            on_list_resource_templates=self.list_templates,
            on_read_resource=self.read_resource,
            on_subscribe_resource=self.subscribe,
            on_unsubscribe_resource=self.unsubscribe,
            on_list_prompts=self.list_prompts,
            on_get_prompt=self.get_prompt,
            on_completion=self.complete,
            on_set_logging_level=self.set_level,
            on_subscriptions_listen=ListenHandler(self.bus),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    app = Fixture().server().streamable_http_app()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
