"""OAuth end to end against a live daphne: the SDK's OAuth client, a real browser at the
consent page, then tokens bound to one endpoint, expiry and revocation cutting streams."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import httpx2
import pytest
from django.utils import timezone
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from oauth.models import OAuthAuthorization
from tests.factories import PASSWORD, EndpointFactory

CHROMIUM = Path("/usr/bin/chromium")
CALLBACK = "http://127.0.0.1:3031/callback"


@pytest.fixture
def admin(admin, settings):
    """alice, with a password the live gateway (default hashers) can check."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    admin.user.set_password(PASSWORD)
    admin.user.save()
    return admin


class MemoryStorage:
    """The SDK's token storage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class BrowserConsent:
    """The user's part: a headless Chromium signs in, reads the consent page, picks a
    duration and clicks Allow; the redirect back to the client is caught."""

    def __init__(self, username: str, duration_label: str) -> None:
        self.username = username
        self.duration_label = duration_label
        self.page_text = ""
        self.result: AuthorizationCodeResult | None = None

    async def redirect_handler(self, authorize_url: str) -> None:
        from playwright.async_api import async_playwright

        captured: list[str] = []
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
            )
            page = await browser.new_page()

            async def catch(route) -> None:
                captured.append(route.request.url)
                await route.fulfill(status=200, body="You can close this window.")

            await page.route("http://127.0.0.1:3031/**", catch)
            await page.goto(authorize_url)
            await page.fill("input[name=username]", self.username)
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_selector("#authorizationForm")
            self.page_text = await page.inner_text("main")
            await page.get_by_label(self.duration_label).check()
            await page.click("button[name=allow]")
            for _ in range(100):
                if captured:
                    break
                await asyncio.sleep(0.05)
            await browser.close()
        query = parse_qs(urlsplit(captured[0]).query)
        self.result = AuthorizationCodeResult(
            code=query["code"][0], state=query["state"][0], iss=query.get("iss", [None])[0]
        )

    async def callback_handler(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


def test_an_sdk_oauth_client_authorizes_through_the_consent_page_and_calls_tools(
    live_gateway, served_endpoint, admin
):
    if not CHROMIUM.exists():
        pytest.fail("Chromium is not at /usr/bin/chromium: run make browser", pytrace=False)
    served = served_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url(served.slug)
    consent = BrowserConsent(admin.user.username, "1 day")
    seen: list[str] = []

    async def log_request(request: httpx2.Request) -> None:
        seen.append(f"{request.method} {request.url.path}")

    async def scenario():
        oauth = OAuthClientProvider(
            server_url=url,
            client_metadata=OAuthClientMetadata(
                client_name="E2E agent",
                redirect_uris=[CALLBACK],
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
                token_endpoint_auth_method="none",
            ),
            storage=MemoryStorage(),
            redirect_handler=consent.redirect_handler,
            callback_handler=consent.callback_handler,
        )
        http = httpx2.AsyncClient(auth=oauth, timeout=30, event_hooks={"request": [log_request]})
        async with http, Client(streamable_http_client(url, http_client=http), cache=None) as c:
            tools = await c.list_tools()
            result = await c.session.call_tool("paged__whoami", {})
            return tools, result

    tools, result = asyncio.run(scenario())
    assert "paged__tool_01" in {tool.name for tool in tools.tools}
    assert not result.is_error
    # The discovery and registration happened as the spec describes.
    assert seen[0] == f"POST /mcp/{served.slug}"
    assert f"GET /.well-known/oauth-protected-resource/mcp/{served.slug}" in seen
    assert "GET /.well-known/oauth-authorization-server" in seen
    assert "POST /o/register/" in seen
    assert "POST /o/token/" in seen
    # The consent page showed who asks, for what, and the tools.
    assert "E2E agent" in consent.page_text
    assert "Team tools" in consent.page_text
    assert "paged__whoami" in consent.page_text
    # The grant lasts the chosen day.
    authorization = OAuthAuthorization.objects.get()
    lasts = authorization.expires_at - authorization.granted_at
    assert timedelta(hours=23, minutes=59) < lasts <= timedelta(days=1)
    assert authorization.resource == url
    # Calls are counted for the sessions page (flushed every few seconds).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        authorization.refresh_from_db()
        if authorization.call_count:
            break
        time.sleep(0.25)
    assert authorization.call_count == 1
    assert authorization.last_used_at is not None


# --- tokens obtained over HTTP, as a scripted client would ----------------------------------


def oauth_tokens(base: str, username: str, resource: str, seconds: int = 3600) -> dict:
    """Register, sign in, consent and exchange the code against the live gateway."""
    form = oauth_code_exchange(base, username, resource, seconds)
    tokens = httpx.post(f"{base}/o/token/", data=form, timeout=10)
    assert tokens.status_code == 200, tokens.text
    return dict(tokens.json())


def oauth_code_exchange(base: str, username: str, resource: str, seconds: int = 3600) -> dict:
    """Register, sign in and consent against the live gateway: the token request's form."""
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    with httpx.Client(base_url=base, timeout=10) as http:
        client_id = http.post(
            "/o/register/",
            json={
                "client_name": "Scripted agent",
                "redirect_uris": [CALLBACK],
                "token_endpoint_auth_method": "none",
            },
        ).json()["client_id"]
        http.get("/accounts/login/")
        login = http.post(
            "/accounts/login/",
            data={
                "username": username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": http.cookies["csrftoken"],
            },
            headers={"Referer": base},
        )
        assert login.status_code == 302, login.text[-2000:]
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": CALLBACK,
                "scope": "mcp",
                "state": "s1",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "resource": resource,
            }
        )
        page = http.get(f"/o/authorize/?{query}")
        assert page.status_code == 200, page.text
        form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
        form = {k: v.replace("&amp;", "&") for k, v in form.items()}
        form.update(duration=str(seconds), allow="Authorize")
        answer = http.post(
            f"/o/authorize/?{query}", data=form, headers={"Referer": f"{base}/o/authorize/"}
        )
        assert answer.status_code == 302, answer.text
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        return {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "client_id": client_id,
            "code_verifier": verifier,
            "resource": resource,
        }


def _initialize(url: str, token: str) -> httpx.Response:
    return httpx.post(
        url,
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-11-25",
        },
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        },
        timeout=10,
    )


def test_a_token_for_one_endpoint_is_refused_on_another(live_gateway, served_endpoint, admin):
    served = served_endpoint()
    EndpointFactory(organization=admin.organization, name="Other", slug="other")
    gateway = live_gateway()
    tokens = oauth_tokens(gateway.base, admin.user.username, gateway.endpoint_url(served.slug))

    assert _initialize(gateway.endpoint_url(served.slug), tokens["access_token"]).status_code == 200
    refused = _initialize(gateway.endpoint_url("other"), tokens["access_token"])
    assert refused.status_code == 401
    challenge = refused.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge
    assert f'resource_metadata="{gateway.base}/.well-known/oauth-protected-resource/mcp/other"' in (
        challenge
    )


def test_a_token_past_its_authorization_is_refused(live_gateway, served_endpoint, admin):
    served = served_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url(served.slug)
    tokens = oauth_tokens(gateway.base, admin.user.username, url)
    assert _initialize(url, tokens["access_token"]).status_code == 200

    OAuthAuthorization.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    time.sleep(1.2)  # the transport caches a token's verdict for one second
    assert _initialize(url, tokens["access_token"]).status_code == 401
    refreshed = httpx.post(
        f"{gateway.base}/o/token/",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": OAuthAuthorization.objects.get().application.client_id,
        },
    )
    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"


def test_a_replayed_code_cuts_the_tokens_it_issued_on_the_live_gateway(
    live_gateway, served_endpoint, admin
):
    served = served_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url(served.slug)
    form = oauth_code_exchange(gateway.base, admin.user.username, url)
    first = httpx.post(f"{gateway.base}/o/token/", data=form, timeout=10)
    assert first.status_code == 200, first.text
    tokens = first.json()
    assert _initialize(url, tokens["access_token"]).status_code == 200

    replay = httpx.post(f"{gateway.base}/o/token/", data=form, timeout=10)

    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    deadline = time.monotonic() + 3
    while _initialize(url, tokens["access_token"]).status_code != 401:
        assert time.monotonic() < deadline, "the access token still works after the replay"
        time.sleep(0.2)
    refreshed = httpx.post(
        f"{gateway.base}/o/token/",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": form["client_id"],
        },
        timeout=10,
    )
    assert refreshed.status_code == 400


def test_revoking_a_session_closes_its_open_stream_at_once(live_gateway, served_endpoint, admin):
    served = served_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url(served.slug)
    tokens = oauth_tokens(gateway.base, admin.user.username, url)
    token = tokens["access_token"]
    session_id = _initialize(url, token).headers["mcp-session-id"]
    headers = {
        "Authorization": f"Bearer {token}",
        "Mcp-Session-Id": session_id,
        "MCP-Protocol-Version": "2025-11-25",
    }

    async def scenario() -> tuple[float, int]:
        async with httpx.AsyncClient(timeout=30) as http:
            await http.post(
                url,
                headers={**headers, "Accept": "application/json, text/event-stream"},
                json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            )
            async with http.stream(
                "GET", url, headers={**headers, "Accept": "text/event-stream"}
            ) as stream:
                assert stream.status_code == 200
                lines = stream.aiter_lines()
                assert (await lines.__anext__()).startswith(":")  # the stream is open
                authorization = await asyncio.to_thread(OAuthAuthorization.objects.get)
                revoked_at = time.monotonic()
                answer = await http.delete(
                    f"{gateway.base}/api/mcp-endpoints/{served.endpoint.pk}/sessions/"
                    f"{authorization.pk}",
                    headers={"Authorization": f"Bearer {admin.token}"},
                )
                assert answer.status_code == 204, answer.text
                async for _line in lines:
                    pass  # ends when the gateway closes the stream
                closed_after = time.monotonic() - revoked_at
            after = await http.post(
                url,
                headers={**headers, "Accept": "application/json, text/event-stream"},
                json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            )
            return closed_after, after.status_code

    closed_after, status = asyncio.run(scenario())
    assert closed_after < 3.0
    assert status == 401


def test_protected_resource_metadata_matches_the_live_challenge(live_gateway, served_endpoint):
    served = served_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url(served.slug)
    challenge = httpx.post(url, json={}).headers["www-authenticate"]
    metadata_url = re.search(r'resource_metadata="([^"]+)"', challenge).group(1)
    metadata = httpx.get(metadata_url).json()
    assert metadata["resource"] == url
    issuer = metadata["authorization_servers"][0]
    server = httpx.get(f"{issuer}/.well-known/oauth-authorization-server").json()
    assert server["issuer"] == issuer == gateway.base
    assert json.dumps(server)  # a JSON document
