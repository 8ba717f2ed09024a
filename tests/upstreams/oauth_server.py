"""An MCP server protected by its own OAuth authorization server, for tests (loopback only).

``python -m tests.upstreams.oauth_server PORT [--access-ttl S] [--cimd] [--no-dcr]
[--refuse-cimd] [--client ID:SECRET --client-redirect URL] [--no-iss]``

Built from the SDK's pieces: a low-level ``Server`` served over Streamable HTTP at
``/mcp``, its bearer middleware (401 with ``resource_metadata``; tokens must be
issued for ``http://127.0.0.1:PORT/mcp``, the RFC 8707 resource), protected-resource
metadata, and the SDK's authorization server routes (``/authorize``, ``/token``,
``/register``) over an in-memory provider written here:

- ``/login`` is the server's own sign-in page: the person types who they are at the
  upstream (no password) and clicks Allow; the code is bound to that name, which
  becomes the token's subject;
- access tokens live ``--access-ttl`` seconds (default 3600); refresh tokens rotate;
- ``--cimd`` advertises client ID metadata documents and accepts URL client ids,
  fetching the document (from the gateway, on loopback); ``--no-dcr`` turns dynamic
  registration off; ``--refuse-cimd`` advertises client ID metadata documents but
  cannot fetch them, as a server on the internet cannot reach a gateway on a private
  address: a URL client id is answered ``invalid_client`` at ``/authorize`` (HTTP 400,
  no redirect) and at ``/token``; ``--client ID:SECRET`` (with ``--client-redirect URL``)
  pre-registers a confidential client, as an admin would at the server; ``--no-iss``
  leaves RFC 9207 ``iss`` out of the redirect;
- ``whoami`` answers the subject of the token it was called with; every MCP request
  is recorded with its bearer token (``GET /control/calls``), and so are the
  authorization requests, token requests and registrations (``GET /control/events``);
- ``POST /control/expire-access?subject=S`` forgets S's access tokens (the next call
  gets 401), ``POST /control/revoke-refresh?subject=S`` forgets S's refresh tokens (the
  next refresh is refused with ``invalid_grant``).
"""

from __future__ import annotations

import argparse
import html
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

import httpx
import mcp_types as types
import uvicorn
from mcp.server import Server
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    RefreshToken,
    TokenError,
    construct_redirect_uri,
)
from mcp.server.auth.routes import cors_middleware
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions
from mcp.shared.auth import OAuthClientInformationFull, OAuthMetadata, OAuthToken
from pydantic import AnyHttpUrl
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

SCOPE = "mcp:tools"
CALLS: list[dict[str, Any]] = []
EVENTS: list[dict[str, Any]] = []


class Provider:
    """The authorization server's storage, in memory."""

    def __init__(
        self, *, issuer: str, access_ttl: int, cimd: bool, iss: bool, refuse_cimd: bool = False
    ) -> None:
        self.issuer, self.access_ttl, self.cimd, self.iss = issuer, access_ttl, cimd, iss
        self.refuse_cimd = refuse_cimd
        self.clients: dict[str, OAuthClientInformationFull] = {}
        self.pending: dict[str, tuple[str, AuthorizationParams]] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        if client_id in self.clients:
            return self.clients[client_id]
        if self.cimd and client_id.startswith(("http://", "https://")):
            # A client ID metadata document: fetch it from its URL (the gateway's).
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(client_id)
            document = response.json()
            if response.status_code != 200 or document.get("client_id") != client_id:
                return None
            info = OAuthClientInformationFull(
                client_id=client_id,
                redirect_uris=document["redirect_uris"],
                token_endpoint_auth_method=document.get("token_endpoint_auth_method", "none"),
                grant_types=document.get("grant_types", ["authorization_code", "refresh_token"]),
                client_name=document.get("client_name"),
                scope=SCOPE,
            )
            EVENTS.append({"event": "cimd_fetched", "client_id": client_id})
            self.clients[client_id] = info
            return info
        return None

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        EVENTS.append(
            {
                "event": "registered",
                "client_id": client_info.client_id,
                "auth_method": client_info.token_endpoint_auth_method,
                "redirect_uris": [str(u) for u in client_info.redirect_uris or []],
                "application_type": client_info.application_type,
            }
        )
        self.clients[client_info.client_id] = client_info

    async def authorize(
        self, client: OAuthClientInformationFull, params: AuthorizationParams
    ) -> str:
        pending = secrets.token_urlsafe(16)
        self.pending[pending] = (client.client_id, params)
        EVENTS.append(
            {
                "event": "authorize",
                "client_id": client.client_id,
                "resource": params.resource,
                "scopes": params.scopes,
                "has_state": bool(params.state),
                "code_challenge": bool(params.code_challenge),
            }
        )
        return f"{self.issuer}/login?pending={pending}"

    def approve(self, pending: str, subject: str) -> str:
        client_id, params = self.pending.pop(pending)
        code = secrets.token_urlsafe(24)
        self.codes[code] = AuthorizationCode(
            code=code,
            scopes=params.scopes or [SCOPE],
            expires_at=time.time() + 300,
            client_id=client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
            subject=subject,
        )
        return construct_redirect_uri(
            str(params.redirect_uri),
            code=code,
            state=params.state,
            iss=self.issuer if self.iss else None,
        )

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        return self.codes.get(authorization_code)

    def _issue(
        self, client_id: str, scopes: list[str], resource: str | None, subject: str
    ) -> OAuthToken:
        access = f"up-at-{subject}-{secrets.token_hex(12)}"
        refresh = f"up-rt-{subject}-{secrets.token_hex(12)}"
        self.access[access] = AccessToken(
            token=access,
            client_id=client_id,
            scopes=scopes,
            expires_at=int(time.time()) + self.access_ttl,
            resource=resource,
            subject=subject,
        )
        self.refresh[refresh] = RefreshToken(
            token=refresh, client_id=client_id, scopes=scopes, resource=resource, subject=subject
        )
        return OAuthToken(
            access_token=access,
            expires_in=self.access_ttl,
            scope=" ".join(scopes),
            refresh_token=refresh,
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        self.codes.pop(authorization_code.code, None)
        return self._issue(
            client.client_id,
            authorization_code.scopes,
            authorization_code.resource,
            authorization_code.subject or "nobody",
        )

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> RefreshToken | None:
        return self.refresh.get(refresh_token)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        self.refresh.pop(refresh_token.token, None)  # rotated: single use
        return self._issue(
            client.client_id, scopes, refresh_token.resource, refresh_token.subject or "nobody"
        )

    async def load_access_token(self, token: str) -> AccessToken | None:
        found = self.access.get(token)
        if found is None or (found.expires_at is not None and found.expires_at < time.time()):
            return None
        return found

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        self.access.pop(token.token, None)
        self.refresh.pop(token.token, None)

    async def exchange_identity_assertion(self, client: Any, params: Any) -> OAuthToken:
        raise TokenError(error="unsupported_grant_type", error_description="not here")


def build(port: int, args: argparse.Namespace) -> ASGIApp:
    base = f"http://127.0.0.1:{port}"
    provider = Provider(
        issuer=base,
        access_ttl=args.access_ttl,
        cimd=args.cimd and not args.refuse_cimd,
        iss=not args.no_iss,
        refuse_cimd=args.refuse_cimd,
    )
    if args.client:
        client_id, client_secret = args.client.split(":", 1)
        provider.clients[client_id] = OAuthClientInformationFull(
            client_id=client_id,
            client_secret=client_secret,
            redirect_uris=[args.client_redirect] if args.client_redirect else None,
            token_endpoint_auth_method="client_secret_basic",
            grant_types=["authorization_code", "refresh_token"],
            scope=SCOPE,
        )

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        schema = {"type": "object", "properties": {"echo": {"type": "string"}}}
        return types.ListToolsResult(
            tools=[
                types.Tool(name="whoami", description="Who the token is for.", input_schema=schema),
                types.Tool(name="echo", description="Echo a text.", input_schema=schema),
            ]
        )

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        user = getattr(ctx.request, "user", None) if ctx.request is not None else None
        token = getattr(user, "access_token", None)
        subject = token.subject if token is not None else None
        if params.name == "whoami":
            text = json.dumps({"subject": subject})
        else:
            text = str((params.arguments or {}).get("echo", ""))
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    server = Server(
        "oauth-test-server",
        version="1.0.0",
        instructions="A server that wants you to sign in.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )

    async def login(request: Request) -> Response:
        pending = request.query_params.get("pending", "")
        if pending not in provider.pending:
            return HTMLResponse("<h1>Unknown sign-in</h1>", status_code=400)
        if request.method == "POST":
            form = await request.form()
            subject = str(form.get("username") or "").strip()
            if not subject:
                return HTMLResponse("<h1>Who are you?</h1>", status_code=400)
            return RedirectResponse(provider.approve(pending, subject), status_code=302)
        client_id, _ = provider.pending[pending]
        page = f"""<!doctype html><html><head><title>Sign in to the test upstream</title></head>
<body><h1>Sign in to the test upstream</h1>
<p>The application <code id="client">{html.escape(client_id)}</code> asks to use your tools.</p>
<form method="post"><label>Your name here <input name="username" id="username"></label>
<button type="submit" id="allow">Allow</button></form></body></html>"""
        return HTMLResponse(page)

    async def metadata(request: Request) -> Response:
        # The SDK's own metadata, plus CIMD and RFC 9207 when this server offers them.
        document = OAuthMetadata(
            issuer=AnyHttpUrl(base),
            authorization_endpoint=AnyHttpUrl(f"{base}/authorize"),
            token_endpoint=AnyHttpUrl(f"{base}/token"),
            registration_endpoint=None if args.no_dcr else AnyHttpUrl(f"{base}/register"),
            scopes_supported=[SCOPE],
            grant_types_supported=["authorization_code", "refresh_token"],
            token_endpoint_auth_methods_supported=[
                "client_secret_post",
                "client_secret_basic",
                "none",
            ],
            code_challenge_methods_supported=["S256"],
            client_id_metadata_document_supported=True if args.cimd or args.refuse_cimd else None,
            authorization_response_iss_parameter_supported=True if not args.no_iss else None,
        )
        return JSONResponse(document.model_dump(mode="json", exclude_none=True))

    async def calls(request: Request) -> Response:
        return JSONResponse(CALLS)

    async def events(request: Request) -> Response:
        return JSONResponse(EVENTS)

    async def expire_access(request: Request) -> Response:
        subject = request.query_params.get("subject")
        gone = [t for t, a in provider.access.items() if a.subject == subject]
        for token in gone:
            del provider.access[token]
        return JSONResponse({"expired": len(gone)})

    async def revoke_refresh(request: Request) -> Response:
        subject = request.query_params.get("subject")
        gone = [t for t, r in provider.refresh.items() if r.subject == subject]
        for token in gone:
            del provider.refresh[token]
        return JSONResponse({"revoked": len(gone)})

    app = server.streamable_http_app(
        auth=AuthSettings(
            issuer_url=AnyHttpUrl(base),
            resource_server_url=AnyHttpUrl(f"{base}/mcp"),
            required_scopes=[SCOPE],
            validate_token_resource=True,
            client_registration_options=ClientRegistrationOptions(
                enabled=not args.no_dcr, valid_scopes=[SCOPE], default_scopes=[SCOPE]
            ),
        ),
        token_verifier=_Verifier(provider),
        auth_server_provider=provider,
        custom_starlette_routes=[
            Route("/login", login, methods=["GET", "POST"]),
            Route("/control/calls", calls),
            Route("/control/events", events),
            Route("/control/expire-access", expire_access, methods=["POST"]),
            Route("/control/revoke-refresh", revoke_refresh, methods=["POST"]),
        ],
    )
    # Served before the SDK's own metadata route (Starlette takes the first match).
    app.router.routes.insert(
        0,
        Route(
            "/.well-known/oauth-authorization-server",
            endpoint=cors_middleware(metadata, ["GET", "OPTIONS"]),
            methods=["GET", "OPTIONS"],
        ),
    )
    return Recorder(app, provider)


class _Verifier:
    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    async def verify_token(self, token: str) -> AccessToken | None:
        return await self.provider.load_access_token(token)


class Recorder:
    """Records each MCP request's bearer token and method, and each token request."""

    def __init__(self, app: ASGIApp, provider: Provider) -> None:
        self.app, self.provider = app, provider

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/authorize" and self.provider.refuse_cimd:
            query = parse_qs(scope.get("query_string", b"").decode())
            client_id = (query.get("client_id") or [""])[0]
            if client_id.startswith(("http://", "https://")):
                EVENTS.append({"event": "cimd_refused", "client_id": client_id})
                refusal = JSONResponse(
                    {
                        "error": "invalid_client",
                        "error_description": "The client metadata document could not be fetched.",
                    },
                    status_code=400,
                )
                return await refusal(scope, receive, send)
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path not in ("/mcp", "/token"):
            return await self.app(scope, receive, send)
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        authorization = headers.get("authorization", "")
        if path == "/mcp":
            try:
                payload = json.loads(body)
            except ValueError:
                payload = {}
            method = payload.get("method") if isinstance(payload, dict) else None
            params = payload.get("params") if isinstance(payload, dict) else None
            token = authorization.removeprefix("Bearer ") if authorization else None
            known = self.provider.access.get(token or "")
            CALLS.append(
                {
                    "method": method,
                    "tool": params.get("name") if isinstance(params, dict) else None,
                    "token": token,
                    "subject": known.subject if known else None,
                }
            )
        else:
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            EVENTS.append(
                {
                    "event": "token",
                    "grant_type": form.get("grant_type"),
                    "resource": form.get("resource"),
                    "client_id": form.get("client_id"),
                    "basic_auth": authorization.startswith("Basic "),
                    "has_verifier": "code_verifier" in form,
                }
            )
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--access-ttl", type=int, default=3600)
    parser.add_argument("--cimd", action="store_true")
    parser.add_argument("--no-dcr", action="store_true")
    parser.add_argument("--refuse-cimd", action="store_true")
    parser.add_argument("--client")
    parser.add_argument("--client-redirect")
    parser.add_argument("--no-iss", action="store_true")
    args = parser.parse_args()
    uvicorn.run(build(args.port, args), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
