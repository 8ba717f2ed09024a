"""The gateway as an OAuth client of upstreams, in process: what discovery refuses, how the
sign-in's answer is checked, and refreshes (one at a time, transient failures kept apart
from revoked grants)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.utils import timezone

from connections import credentials, upstream_oauth
from connections.models import CredentialState, UpstreamCredential, UpstreamOAuthFlow
from connections.services import connection_create

pytestmark = pytest.mark.django_db(transaction=True)


# --- a canned metadata server ------------------------------------------------------------


class Canned:
    """A loopback HTTP server answering fixed JSON documents by path."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, Any, dict[str, str]]] = {}
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                status, body, headers = canned.routes.get(
                    urlsplit(self.path).path, (404, {"error": "nope"}, {})
                )
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def good(self, **overrides: Any) -> None:
        base = self.base
        self.routes["/mcp"] = (
            401,
            {},
            {
                "WWW-Authenticate": f'Bearer resource_metadata="{base}/.well-known/'
                'oauth-protected-resource/mcp", scope="files:read"'
            },
        )
        self.routes["/.well-known/oauth-protected-resource/mcp"] = (
            200,
            {"resource": f"{base}/mcp", "authorization_servers": [f"{base}/as"]},
            {},
        )
        metadata = {
            "issuer": f"{base}/as",
            "authorization_endpoint": f"{base}/as/authorize",
            "token_endpoint": f"{base}/as/token",
            "code_challenge_methods_supported": ["S256"],
            **overrides,
        }
        self.routes["/.well-known/oauth-authorization-server/as"] = (200, metadata, {})


@pytest.fixture
def canned() -> Iterator[Canned]:
    server = Canned()
    yield server
    server.server.shutdown()


def discover(url: str) -> upstream_oauth.Discovery:
    return asyncio.run(upstream_oauth.discover(url, timeout=5))


def test_discovery_follows_the_challenge_to_the_path_inserted_metadata(canned):
    canned.good()

    found = discover(f"{canned.base}/mcp")

    assert found.resource == f"{canned.base}/mcp"
    assert found.issuer == f"{canned.base}/as"
    assert str(found.metadata.token_endpoint) == f"{canned.base}/as/token"
    assert found.scope == "files:read"  # the challenge's scope comes first


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"code_challenge_methods_supported": ["plain"]}, "PKCE with S256"),
        ({"code_challenge_methods_supported": None}, "PKCE with S256"),
        ({"issuer": "https://elsewhere.example.com"}, "names another issuer"),
        ({"token_endpoint": "http://tokens.example.com/token"}, "must be an https:// URL"),
        ({"authorization_endpoint": "javascript:alert(1)"}, ""),
    ],
)
def test_discovery_refuses_unusable_authorization_servers(canned, change, message):
    canned.good(**change)

    with pytest.raises(upstream_oauth.UpstreamOAuthError) as caught:
        discover(f"{canned.base}/mcp")

    assert message in caught.value.message


def test_discovery_refuses_metadata_of_another_resource(canned):
    canned.good()
    canned.routes["/.well-known/oauth-protected-resource/mcp"] = (
        200,
        {"resource": "https://other.example.com/mcp", "authorization_servers": ["https://a.b"]},
        {},
    )

    with pytest.raises(upstream_oauth.UpstreamOAuthError) as caught:
        discover(f"{canned.base}/mcp")

    assert "another resource" in caught.value.message


def test_discovery_caps_the_size_of_what_it_reads(canned):
    canned.good()
    canned.routes["/.well-known/oauth-protected-resource/mcp"] = (200, b"x" * 300_000, {})

    with pytest.raises(upstream_oauth.UpstreamOAuthError) as caught:
        discover(f"{canned.base}/mcp")

    assert "oversized" in caught.value.message


def test_discovery_never_connects_to_a_private_address_unless_allowed(canned, settings):
    canned.good()
    settings.GATEWAY_ALLOW_PRIVATE_UPSTREAMS = False

    with pytest.raises(upstream_oauth.UpstreamOAuthError) as caught:
        discover(f"{canned.base}/mcp")

    assert "private or reserved address" in caught.value.message


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://as.example.com/token", True),
        ("http://127.0.0.1:9/token", True),
        ("http://localhost:9/token", True),
        ("http://as.example.com/token", False),
        ("ftp://as.example.com/token", False),
        ("https://user:pw@as.example.com/token", False),
        ("https://as.example.com/token#x", False),
    ],
)
def test_oauth_urls_must_be_https_or_loopback_in_development(url, allowed, settings):
    settings.GATEWAY_ALLOW_PRIVATE_UPSTREAMS = True
    assert (upstream_oauth.endpoint_refusal(url, "token endpoint") is None) is allowed


def test_loopback_http_is_refused_when_private_upstreams_are_not_allowed(settings):
    settings.GATEWAY_ALLOW_PRIVATE_UPSTREAMS = False
    assert upstream_oauth.endpoint_refusal("http://127.0.0.1:9/t", "token endpoint")


# --- sign-in against the real test upstream, in process ----------------------------------------


@pytest.fixture
def upstream(start_oauth_upstream):
    return start_oauth_upstream()


@pytest.fixture
def signed(org, upstream, admin, settings):
    settings.GATEWAY_PUBLIC_URL = "http://testserver"
    return connection_create(
        organization=org,
        name="Signed",
        server_url=upstream.url,
        auth_type="oauth",
        credential_mode="personal",
    )


def start(client: Client, connection) -> str:
    response = client.post(f"/me/connections/{connection.pk}/connect")
    assert response.status_code == 302, response.content
    return str(response["Location"])


def upstream_answer(authorize_url: str, subject: str) -> str:
    """Sign in at the upstream's page; the callback URL it sends the browser to."""
    with httpx.Client(timeout=10) as http:
        page = http.get(authorize_url).headers["location"]
        return str(http.post(page, data={"username": subject}).headers["location"])


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_a_sign_in_stores_the_tokens_and_its_flow_is_gone(signed, admin):
    client = Client()
    client.force_login(admin.user)

    callback = upstream_answer(start(client, signed), "alice-up")
    assert UpstreamOAuthFlow.objects.count() == 1
    response = client.get(path_of(callback))

    assert response.status_code == 302
    assert not UpstreamOAuthFlow.objects.exists()
    credential = UpstreamCredential.objects.get(user=admin.user)
    assert credential.kind == "oauth" and credential.state == CredentialState.VALID
    assert credential.bearer.startswith("up-at-alice-up-")
    assert credential.expires_at > timezone.now() + timedelta(minutes=50)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda q: {**q, "iss": ["https://evil.example.com"]}, "another authorization server"),
        (lambda q: {k: v for k, v in q.items() if k != "iss"}, "lacks its issuer"),
        (lambda q: {k: v for k, v in q.items() if k != "code"}, "has no code"),
        (lambda q: {"state": q["state"], "error": ["access_denied"]}, "(access_denied)"),
        (lambda q: {**q, "code": ["forged"]}, "code (invalid_grant)"),
    ],
)
def test_a_tampered_or_refused_answer_is_refused_and_stores_nothing(signed, admin, tamper, message):
    client = Client()
    client.force_login(admin.user)
    callback = upstream_answer(start(client, signed), "alice-up")
    query = tamper(parse_qs(urlsplit(callback).query))
    flat = "&".join(f"{k}={httpx.QueryParams({k: v[0]})[k]}" for k, v in query.items())

    response = client.get(f"/connections/oauth/callback?{flat}")

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not UpstreamCredential.objects.exists()
    assert not UpstreamOAuthFlow.objects.exists()  # used up


def test_an_expired_sign_in_is_refused(signed, admin):
    client = Client()
    client.force_login(admin.user)
    callback = upstream_answer(start(client, signed), "alice-up")
    UpstreamOAuthFlow.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = client.get(path_of(callback))

    assert response.status_code == 400
    assert "expired" in response.content.decode()


def test_the_periodic_task_forgets_abandoned_sign_ins(signed, admin):
    client = Client()
    client.force_login(admin.user)
    start(client, signed)
    start(client, signed)
    UpstreamOAuthFlow.objects.filter(pk=UpstreamOAuthFlow.objects.first().pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert credentials.upstream_oauth_flows_expired_delete() == 1
    assert UpstreamOAuthFlow.objects.count() == 1


def signed_in(signed, admin) -> UpstreamCredential:
    client = Client()
    client.force_login(admin.user)
    client.get(path_of(upstream_answer(start(client, signed), "alice-up")))
    return UpstreamCredential.objects.get(user=admin.user)


def test_concurrent_refreshes_spend_the_refresh_token_once(signed, admin, upstream):
    credential = signed_in(signed, admin)

    async def both() -> list[credentials.RefreshOutcome]:
        return list(
            await asyncio.gather(
                credentials.credential_refresh(str(credential.pk), rejected=credential.bearer),
                credentials.credential_refresh(str(credential.pk), rejected=credential.bearer),
            )
        )

    outcomes = async_to_sync(both)()

    assert [o.status for o in outcomes] == ["refreshed", "refreshed"]
    grants = [e for e in upstream.events() if e.get("grant_type") == "refresh_token"]
    assert len(grants) == 1
    after = UpstreamCredential.objects.get(pk=credential.pk)
    assert after.state == CredentialState.VALID and after.bearer != credential.bearer
    assert after.refresh_claimed_until is None


def test_an_unreachable_authorization_server_is_a_transient_failure(signed, admin, upstream):
    credential = signed_in(signed, admin)
    secret = dict(credential.secret)
    secret["token_endpoint"] = "http://127.0.0.1:9/token"  # nothing listens there
    credential.secret = secret
    credential.save()

    outcome = credentials.credential_refresh_sync(str(credential.pk))

    assert outcome.status == "failed"
    after = UpstreamCredential.objects.get(pk=credential.pk)
    assert after.state == CredentialState.VALID  # not the user's fault: try again later
    assert after.refresh_claimed_until is None


def test_a_revoked_refresh_token_needs_a_new_sign_in(signed, admin, upstream):
    credential = signed_in(signed, admin)
    upstream.control("revoke-refresh", "alice-up")

    outcome = credentials.credential_refresh_sync(str(credential.pk))

    assert outcome.status == "needs_reauth"
    after = UpstreamCredential.objects.get(pk=credential.pk)
    assert after.state == CredentialState.NEEDS_REAUTH
    assert "invalid_grant" in after.state_reason
    assert credentials.credentials_refresh_due() == []  # the task leaves it alone now


# --- a server that cannot fetch the gateway's client ID metadata document ----------------------


@pytest.fixture
def unreachable_cimd(org, start_oauth_upstream, settings):
    """A server that advertises CIMD but cannot fetch the gateway's document.

    The gateway's public URL is on loopback, so CIMD is usable from its side; the
    server answers a URL client id with ``invalid_client``, as a server on the
    internet answers a gateway on a private address.
    """
    settings.GATEWAY_PUBLIC_URL = "http://127.0.0.1:9"
    upstream = start_oauth_upstream("--refuse-cimd")
    connection = connection_create(
        organization=org,
        name="Refuses CIMD",
        server_url=upstream.url,
        auth_type="oauth",
        credential_mode="personal",
    )
    return upstream, connection


def client_id_of(authorize_url: str) -> str:
    return parse_qs(urlsplit(authorize_url).query)["client_id"][0]


def test_it_falls_back_to_dynamic_registration_when_the_server_refuses_its_cimd(
    unreachable_cimd, admin
):
    upstream, connection = unreachable_cimd
    client = Client()
    client.force_login(admin.user)

    authorize_url = start(client, connection)

    events = upstream.events()
    cimd_url = "http://127.0.0.1:9/oauth/upstream-client.json"
    assert {"event": "cimd_refused", "client_id": cimd_url} in events
    registered = [e for e in events if e["event"] == "registered"]
    assert [e["client_id"] for e in registered] == [client_id_of(authorize_url)]
    assert client_id_of(authorize_url) != cimd_url
    connection.refresh_from_db()
    assert connection.oauth_registration == "dcr"
    assert connection.oauth_client["cimd_refused"] is True

    # The sign-in completes with the registered client.
    response = client.get(path_of(upstream_answer(authorize_url, "alice-up")))
    assert response.status_code == 302
    assert UpstreamCredential.objects.get(user=admin.user).state == CredentialState.VALID

    # The choice is remembered: the next sign-in neither asks about CIMD nor registers again.
    again = start(client, connection)
    assert client_id_of(again) == client_id_of(authorize_url)
    later = upstream.events()[len(events) :]
    assert not [e for e in later if e["event"] in ("cimd_refused", "registered")]


def test_a_cimd_client_refused_at_the_token_endpoint_registers_dynamically_next_time(
    unreachable_cimd, admin
):
    upstream, connection = unreachable_cimd
    cimd_url = "http://127.0.0.1:9/oauth/upstream-client.json"
    # A CIMD registration made while the server could still fetch the document.
    connection.oauth_client = upstream_oauth.ClientRegistration(
        method="cimd",
        client_id=cimd_url,
        client_secret=None,
        token_endpoint_auth_method="none",
        issuer=upstream.base,
    ).as_json()
    connection.save()
    client = Client()
    client.force_login(admin.user)
    authorize_url = start(client, connection)
    assert client_id_of(authorize_url) == cimd_url
    state = parse_qs(urlsplit(authorize_url).query)["state"][0]

    response = client.get(
        "/connections/oauth/callback", {"state": state, "code": "any", "iss": upstream.base}
    )

    assert response.status_code == 400
    assert "(invalid_client)" in response.content.decode()
    connection.refresh_from_db()
    assert connection.oauth_client == {"cimd_refused": True}
    assert connection.oauth_registration is None

    retry = start(client, connection)
    assert client_id_of(retry) != cimd_url
    assert [e for e in upstream.events() if e["event"] == "registered"]
    connection.refresh_from_db()
    assert connection.oauth_registration == "dcr" and connection.oauth_client["cimd_refused"]
