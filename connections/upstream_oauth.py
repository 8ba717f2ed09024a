"""The gateway as an OAuth client of upstream MCP servers (async, no ORM).

For a connection with ``authType: oauth`` the gateway is a confidential web
client of the server's own authorization server, as the MCP authorization
specification describes: it discovers the protected-resource metadata (the
``WWW-Authenticate`` challenge, then the path-inserted and root well-known
URLs), then the authorization server's metadata (RFC 8414 and OpenID
discovery, issuer checked), registers itself (a client ID metadata document,
dynamic registration, or an id an admin entered), sends the browser to the
authorization endpoint with PKCE S256, ``state`` and ``resource``, and trades
the code, and later refresh tokens, at the token endpoint.

The SDK's ``OAuthClientProvider`` is built for a local interactive client
that waits for its own callback; here the redirect and the callback are two
web requests, possibly on two instances, so this module runs the same steps
with the SDK's models and discovery helpers. Every request goes through the
guarded outbound client (``outbound.py``); responses are size-capped; token
responses and error bodies are never logged.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx2
from mcp.client.auth import PKCEParameters
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
    extract_field_from_www_auth,
    get_client_metadata_scopes,
    issuers_match,
)

__all__ = ["issuers_match"]  # re-exported for the credential services
from mcp.shared.auth import (
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthMetadata,
    OAuthToken,
    ProtectedResourceMetadata,
)
from mcp.shared.auth_utils import check_resource_allowed, resource_url_from_server_url
from pydantic import ValidationError

from connections.outbound import outbound_http_client, private_upstreams_allowed
from connections.upstream import UpstreamError, UpstreamTarget, describe_failure

logger = logging.getLogger(__name__)

METADATA_MAX_BYTES: Final = 256 * 1024
TOKEN_MAX_BYTES: Final = 64 * 1024
PROTOCOL_VERSION: Final = "2025-11-25"
# Token endpoint authentication the gateway can do, most preferred first.
AUTH_METHODS: Final = ("client_secret_post", "client_secret_basic", "none")


class UpstreamOAuthError(Exception):
    """The upstream's OAuth side cannot be used as it is; ``message`` says why, for people."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TokenRefused(Exception):
    """The token endpoint answered an OAuth error (``error`` is its code, e.g. invalid_grant).

    ``invalid_grant`` and the client errors mean the grant cannot be used again:
    the user must sign in again. The description is kept short and never holds
    a token (the gateway sends none in a form the server would echo).
    """

    def __init__(self, error: str, description: str = "") -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description[:200]

    @property
    def permanent(self) -> bool:
        return self.error in {"invalid_grant", "invalid_client", "unauthorized_client"}


@dataclass(frozen=True)
class Discovery:
    """What the gateway learnt about an upstream's authorization, ready for a sign-in."""

    resource: str
    issuer: str
    metadata: OAuthMetadata
    scope: str | None


@dataclass(frozen=True)
class ClientRegistration:
    """The gateway's client at one authorization server."""

    method: str  # manual, cimd or dcr
    client_id: str
    client_secret: str | None
    token_endpoint_auth_method: str
    issuer: str
    # The server refused the gateway's client ID metadata document once: dynamic
    # registration was chosen instead, and stays chosen for this connection.
    cimd_refused: bool = False

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "method": self.method,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "issuer": self.issuer,
        }
        if self.cimd_refused:
            data["cimd_refused"] = True
        return data

    @classmethod
    def from_json(cls, data: Any) -> ClientRegistration | None:
        if not isinstance(data, dict) or not isinstance(data.get("client_id"), str):
            return None
        secret = data.get("client_secret")
        return cls(
            method=str(data.get("method") or "manual"),
            client_id=data["client_id"],
            client_secret=secret if isinstance(secret, str) and secret else None,
            token_endpoint_auth_method=str(
                data.get("token_endpoint_auth_method")
                or ("client_secret_post" if secret else "none")
            ),
            issuer=str(data.get("issuer") or ""),
            cimd_refused=cimd_refused(data),
        )


def cimd_refused(stored: Any) -> bool:
    """Whether a connection's stored registration says the server refused the gateway's CIMD.

    Read from the stored JSON rather than a registration, because the mark outlives
    a registration the server forgot (``{"cimd_refused": true}`` alone).
    """
    return isinstance(stored, dict) and stored.get("cimd_refused") is True


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def endpoint_refusal(url: str, what: str) -> str | None:
    """Why an OAuth URL from an upstream cannot be used, or None.

    HTTPS only; plain HTTP only for a loopback host while private upstreams are
    allowed (development and tests). No credentials or fragments in it.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"The {what} is not a valid URL."
    if parts.scheme == "https" and parts.hostname:
        pass
    elif parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        if not private_upstreams_allowed():
            return f"The {what} ({parts.hostname}) is a loopback address the gateway may not use."
    else:
        return f"The {what} must be an https:// URL."
    if parts.username or parts.password or parts.fragment:
        return f"The {what} must not carry credentials or a #fragment."
    return None


def _client(timeout: float) -> httpx2.AsyncClient:
    return outbound_http_client(
        headers={"Accept": "application/json"}, timeout=httpx2.Timeout(timeout)
    )


async def _read(response: httpx2.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise UpstreamOAuthError("The authorization server sent an oversized answer.")
        chunks.append(chunk)
    return b"".join(chunks)


def _failure(error: BaseException, url: str, timeout: float) -> UpstreamOAuthError:
    target = UpstreamTarget(url=url, transport="streamable-http")
    described = describe_failure(error, target=target, http_status=None, timeout=timeout)
    return UpstreamOAuthError(described.message)


async def _get(client: httpx2.AsyncClient, url: str, timeout: float) -> tuple[int, bytes]:
    try:
        async with client.stream(
            "GET", url, headers={"MCP-Protocol-Version": PROTOCOL_VERSION}
        ) as response:
            if response.status_code != 200:
                return response.status_code, b""
            return 200, await _read(response, METADATA_MAX_BYTES)
    except UpstreamOAuthError:
        raise
    except Exception as error:
        raise _failure(error, url, timeout) from None


async def _challenge(
    client: httpx2.AsyncClient, server_url: str, timeout: float
) -> httpx2.Response:
    """An unauthenticated MCP request, to read the server's ``WWW-Authenticate`` challenge."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "mcp-gateway", "version": "1.0"},
        },
    }
    try:
        async with client.stream(
            "POST",
            server_url,
            content=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": PROTOCOL_VERSION,
            },
        ) as response:
            return response  # only the status and headers are read
    except Exception as error:
        raise _failure(error, server_url, timeout) from None


async def discover(server_url: str, *, timeout: float = 10.0) -> Discovery:
    """Find the upstream's authorization server, as an MCP client must.

    Raises ``UpstreamOAuthError`` with a message for people when the server does
    not publish usable metadata.
    """
    async with _client(timeout) as client:
        challenge = await _challenge(client, server_url, timeout)
        header_url = (
            extract_field_from_www_auth(challenge, "resource_metadata")
            if challenge.status_code in (401, 403)
            else None
        )
        challenged_scope = (
            extract_field_from_www_auth(challenge, "scope")
            if challenge.status_code in (401, 403)
            else None
        )
        prm: ProtectedResourceMetadata | None = None
        for url in build_protected_resource_metadata_discovery_urls(header_url, server_url):
            if endpoint_refusal(url, "resource metadata URL") is not None:
                continue
            status, content = await _get(client, url, timeout)
            if status != 200:
                continue
            try:
                prm = ProtectedResourceMetadata.model_validate_json(content)
            except ValidationError:
                continue
            break
        if prm is None:
            raise UpstreamOAuthError(
                "The server publishes no OAuth protected-resource metadata (RFC 9728), so the "
                "gateway cannot find where to sign in. Check the server URL, or use a bearer token."
            )
        canonical = resource_url_from_server_url(server_url)
        prm_resource = str(prm.resource)
        if not check_resource_allowed(
            requested_resource=canonical, configured_resource=prm_resource
        ):
            raise UpstreamOAuthError(
                f"The server's metadata is for another resource ({prm_resource}), not {canonical}."
            )
        issuer = str(prm.authorization_servers[0])
        refusal = endpoint_refusal(issuer, "authorization server")
        if refusal:
            raise UpstreamOAuthError(refusal)
        metadata: OAuthMetadata | None = None
        for url in build_oauth_authorization_server_metadata_discovery_urls(issuer, server_url):
            status, content = await _get(client, url, timeout)
            if status != 200:
                continue
            try:
                found = OAuthMetadata.model_validate_json(content)
            except ValidationError:
                continue
            # RFC 8414 §3.3: the document must name the issuer it was fetched for.
            if not issuers_match(str(found.issuer), issuer):
                raise UpstreamOAuthError(
                    f"The authorization server's metadata names another issuer ({found.issuer})."
                )
            metadata = found
            break
        if metadata is None:
            raise UpstreamOAuthError(
                f"The authorization server {issuer} publishes no metadata (RFC 8414 or OpenID)."
            )
    if "S256" not in (metadata.code_challenge_methods_supported or []):
        raise UpstreamOAuthError(
            "The authorization server does not support PKCE with S256, which MCP requires."
        )
    for url, what in (
        (str(metadata.authorization_endpoint), "authorization endpoint"),
        (str(metadata.token_endpoint), "token endpoint"),
    ):
        refusal = endpoint_refusal(url, what)
        if refusal:
            raise UpstreamOAuthError(refusal)
    scope = get_client_metadata_scopes(
        challenged_scope, prm, metadata, ["authorization_code", "refresh_token"]
    )
    resource = prm_resource if prm_resource else canonical
    return Discovery(resource=resource, issuer=issuer, metadata=metadata, scope=scope)


def client_metadata_document(
    *, client_id: str, redirect_uri: str, name: str, uri: str
) -> dict[str, Any]:
    """The gateway's client ID metadata document (served at its ``client_id`` URL)."""
    return {
        "client_id": client_id,
        "client_name": name,
        "client_uri": uri,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": application_type(redirect_uri),
    }


def application_type(redirect_uri: str) -> str:
    """``native`` for a loopback redirect (a development gateway), ``web`` otherwise."""
    return "native" if _is_loopback(urlsplit(redirect_uri).hostname or "") else "web"


def cimd_usable(client_id_url: str) -> bool:
    """A client ID URL must be HTTPS with a path; a loopback gateway (development) may use http."""
    parts = urlsplit(client_id_url)
    if parts.path in ("", "/"):
        return False
    return parts.scheme == "https" or (
        parts.scheme == "http" and _is_loopback(parts.hostname or "")
    )


async def register(
    discovery: Discovery,
    *,
    redirect_uri: str,
    client_name: str,
    client_uri: str,
    timeout: float = 10.0,
) -> ClientRegistration:
    """Dynamic client registration (RFC 7591) as a confidential web client."""
    endpoint = discovery.metadata.registration_endpoint
    if endpoint is None:
        raise UpstreamOAuthError(
            "The authorization server accepts neither client ID metadata documents nor "
            "dynamic registration: enter the client id and secret it gave you on the connection."
        )
    refusal = endpoint_refusal(str(endpoint), "registration endpoint")
    if refusal:
        raise UpstreamOAuthError(refusal)
    supported = discovery.metadata.token_endpoint_auth_methods_supported or ["client_secret_basic"]
    method = next((m for m in AUTH_METHODS if m in supported), "client_secret_basic")
    metadata = OAuthClientMetadata.model_validate(
        {
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": method,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": client_name,
            "client_uri": client_uri,
            "scope": discovery.scope,
            "application_type": application_type(redirect_uri),
        }
    )
    payload = metadata.model_dump(by_alias=True, mode="json", exclude_none=True)
    async with _client(timeout) as client:
        try:
            async with client.stream(
                "POST", str(endpoint), json=payload, headers={"Content-Type": "application/json"}
            ) as response:
                content = await _read(response, TOKEN_MAX_BYTES)
                status = response.status_code
        except UpstreamOAuthError:
            raise
        except Exception as error:
            raise _failure(error, str(endpoint), timeout) from None
    if status not in (200, 201):
        code = _error_code(content)
        raise UpstreamOAuthError(
            f"The authorization server refused the gateway's registration "
            f"(HTTP {status}{f', {code}' if code else ''})."
        )
    try:
        body = json.loads(content)
        if isinstance(body, dict):
            body.pop("issuer", None)
        info = OAuthClientInformationFull.model_validate(body)
    except (ValueError, ValidationError):
        raise UpstreamOAuthError(
            "The authorization server's registration answer is not valid."
        ) from None
    used = info.token_endpoint_auth_method or method
    if used not in AUTH_METHODS:
        raise UpstreamOAuthError(
            f"The authorization server registered the gateway for {used!r} client "
            "authentication, which the gateway does not support."
        )
    return ClientRegistration(
        method="dcr",
        client_id=info.client_id,
        client_secret=info.client_secret,
        token_endpoint_auth_method=used,
        issuer=discovery.issuer,
    )


# What an authorization server answers, instead of a sign-in page, for a client id it
# cannot use. invalid_request is included: the SDK's server, among others, answers it
# for "Client ID not found".
_CLIENT_REFUSALS: Final = frozenset({"invalid_client", "unauthorized_client", "invalid_request"})


async def client_id_refused(
    authorization_endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    resource: str,
    scope: str | None,
    timeout: float = 10.0,
) -> bool:
    """Whether the authorization server refuses ``client_id`` before anyone signs in.

    A server that cannot fetch the gateway's client ID metadata document (any
    gateway on a private address, seen from a server on the internet) answers the
    authorization request with ``invalid_client`` instead of its sign-in page, and
    RFC 6749 §4.1.2.1 forbids it to redirect back with the error: the person would
    be left on the server's error page. So the gateway asks once itself, with a
    throwaway ``state`` and PKCE challenge that nobody can complete, reading only
    the status, the redirect's error code or a short error body. A sign-in page
    (200) or a redirect to one means the client id is accepted.
    """
    url = authorization_url(
        authorization_endpoint,
        client_id=client_id,
        redirect_uri=redirect_uri,
        state=secrets.token_urlsafe(16),
        code_challenge=pkce().code_challenge,
        resource=resource,
        scope=scope,
    )
    async with _client(timeout) as client:
        try:
            async with client.stream("GET", url) as response:
                status = response.status_code
                location = response.headers.get("location", "")
                content = await _read(response, METADATA_MAX_BYTES) if status >= 400 else b""
        except UpstreamOAuthError:
            raise
        except Exception as error:
            raise _failure(error, authorization_endpoint, timeout) from None
    if 300 <= status < 400:
        if not location.startswith(redirect_uri):
            return False  # on to the server's own sign-in page
        errors = parse_qs(urlsplit(location).query).get("error", [])
        return bool(errors) and errors[0] in _CLIENT_REFUSALS
    if status in (400, 401, 403):
        code = _error_code(content)
        # An HTML error page names no code, but a 4xx to a well-formed request is a refusal.
        return code in _CLIENT_REFUSALS or not code
    return False


def pkce() -> PKCEParameters:
    """A fresh PKCE verifier and its S256 challenge."""
    return PKCEParameters.generate()


def authorization_url(
    discovery_endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    code_challenge: str,
    resource: str,
    scope: str | None,
) -> str:
    """Where the browser goes to sign in: code flow, PKCE S256, ``state``, ``resource``."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
        "resource": resource,
    }
    if scope:
        params["scope"] = scope
    separator = "&" if urlsplit(discovery_endpoint).query else "?"
    return discovery_endpoint + separator + urlencode(params)


def _error_code(content: bytes) -> str:
    try:
        body = json.loads(content)
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    # Only a short, plain OAuth error code is ever repeated (never the body).
    if isinstance(error, str) and error.replace("_", "").isalnum() and len(error) <= 64:
        return error
    return ""


def _error_description(content: bytes) -> str:
    try:
        body = json.loads(content)
    except ValueError:
        return ""
    text = body.get("error_description") if isinstance(body, dict) else None
    return text[:200] if isinstance(text, str) else ""


async def token_request(
    token_endpoint: str,
    data: dict[str, str],
    *,
    registration: ClientRegistration,
    timeout: float = 10.0,
) -> OAuthToken:
    """POST to the token endpoint with the client's authentication; the tokens it answers.

    Raises ``TokenRefused`` for an OAuth error answer, ``UpstreamOAuthError`` when
    the server cannot be reached or answers nonsense (a transient failure).
    """
    refusal = endpoint_refusal(token_endpoint, "token endpoint")
    if refusal:
        raise UpstreamOAuthError(refusal)
    # client_id goes in the body with every method (RFC 6749 §2.3.1 allows it; some
    # servers, the SDK's among them, require it even with Basic authentication).
    form = {**data, "client_id": registration.client_id}
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    method = registration.token_endpoint_auth_method
    if method == "client_secret_basic" and registration.client_secret:
        pair = (
            f"{quote(registration.client_id, safe='')}:{quote(registration.client_secret, safe='')}"
        )
        headers["Authorization"] = f"Basic {base64.b64encode(pair.encode()).decode()}"
    elif method == "client_secret_post" and registration.client_secret:
        form["client_secret"] = registration.client_secret
    async with _client(timeout) as client:
        try:
            async with client.stream(
                "POST", token_endpoint, content=urlencode(form).encode(), headers=headers
            ) as response:
                content = await _read(response, TOKEN_MAX_BYTES)
                status = response.status_code
        except UpstreamOAuthError:
            raise
        except Exception as error:
            raise _failure(error, token_endpoint, timeout) from None
    if status == 200:
        try:
            token = OAuthToken.model_validate_json(content)
        except ValidationError:
            raise UpstreamOAuthError("The token endpoint's answer is not a valid token.") from None
        return token
    code = _error_code(content)
    if 400 <= status < 500 and code:
        raise TokenRefused(code, _error_description(content))
    if status in (401, 403):
        raise TokenRefused("invalid_client", f"HTTP {status}")
    raise UpstreamOAuthError(f"The token endpoint answered HTTP {status}.")


async def code_exchange(
    token_endpoint: str,
    *,
    registration: ClientRegistration,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    resource: str,
    timeout: float = 10.0,
) -> OAuthToken:
    """Trade an authorization code (with its PKCE verifier) for tokens."""
    return await token_request(
        token_endpoint,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
            "resource": resource,
        },
        registration=registration,
        timeout=timeout,
    )


async def token_refresh(
    token_endpoint: str,
    *,
    registration: ClientRegistration,
    refresh_token: str,
    resource: str,
    scope: str | None,
    timeout: float = 10.0,
) -> OAuthToken:
    """Trade a refresh token for new tokens (the server may rotate the refresh token)."""
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "resource": resource}
    if scope:
        data["scope"] = scope
    return await token_request(token_endpoint, data, registration=registration, timeout=timeout)


def unexpected(error: BaseException) -> UpstreamError:
    """An OAuth failure as the transport reports upstream failures."""
    if isinstance(error, UpstreamOAuthError):
        return UpstreamError("unreachable", error.message)
    return UpstreamError("protocol", "The upstream's authorization server failed.")
