"""Dynamic client registration: the per-address limit behind (or without) proxies, and
the redirect URIs a client may register (RFC 9700: https, loopback http, app schemes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
from django.test import Client

from gateway_project.run import daphne_command
from oauth.models import OAuthApplication
from tests.helpers import free_port, wait_for_port
from tests.oauth.test_authorization_server import REDIRECT, register
from tests.transport.conftest import ROOT, _database_env


def _registration(**metadata) -> str:
    return json.dumps(
        {"client_name": "Agent", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
        | metadata
    )


def _post(client: Client, body: str, **meta: Any):
    return client.post("/o/register/", body, content_type="application/json", **meta)


# --- the limit per address -------------------------------------------------------------------


@pytest.mark.django_db
def test_it_keys_the_registration_limit_on_the_peer_not_on_forwarded_headers(client, settings):
    settings.GATEWAY_OAUTH_REGISTRATIONS_PER_HOUR = 3
    settings.GATEWAY_TRUSTED_PROXIES = []
    for _ in range(3):
        register(client)
    statuses = [
        _post(
            client,
            _registration(),
            HTTP_X_FORWARDED_FOR=f"203.0.113.{n}",
            HTTP_X_REAL_IP=f"198.51.100.{n}",
        ).status_code
        for n in range(40)
    ]
    assert statuses == [429] * 40
    assert OAuthApplication.objects.count() == 3


@pytest.mark.django_db
def test_behind_a_trusted_proxy_the_limit_keys_on_the_forwarded_client(client, settings):
    settings.GATEWAY_OAUTH_REGISTRATIONS_PER_HOUR = 2
    settings.GATEWAY_TRUSTED_PROXIES = ["127.0.0.1"]  # the test client's peer address
    first = {"HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.7"}
    assert [_post(client, _registration(), **first).status_code for _ in range(3)] == [
        201,
        201,
        429,
    ]
    # What the client put in front of the proxy's entry changes nothing.
    spoofed = {"HTTP_X_FORWARDED_FOR": "1.1.1.1, 203.0.113.7"}
    assert _post(client, _registration(), **spoofed).status_code == 429
    other = {"HTTP_X_FORWARDED_FOR": "203.0.113.8"}
    assert _post(client, _registration(), **other).status_code == 201


@pytest.fixture
def gateway_as_make_run_starts_it(transactional_db, tmp_path):
    """daphne with the command line ``make run`` uses, on a free loopback port."""
    port = free_port()
    env = {
        **os.environ,
        **_database_env(),
        "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "GATEWAY_OAUTH_REGISTRATIONS_PER_HOUR": "3",
        "GATEWAY_TRUSTED_PROXIES": "",
        "GATEWAY_AUDIT_SPOOL_DIR": str(tmp_path / "audit-spool"),
        "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
    }
    command = daphne_command(python=sys.executable, bind="127.0.0.1", port=port)
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_forwarded_headers_do_not_lift_the_limit_on_the_live_server(gateway_as_make_run_starts_it):
    url = f"{gateway_as_make_run_starts_it}/o/register/"
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=10) as http:
        before = [http.post(url, content=_registration(), headers=headers) for _ in range(3)]
        assert [r.status_code for r in before] == [201, 201, 201]
        after = [
            http.post(
                url,
                content=_registration(),
                headers={
                    **headers,
                    "X-Forwarded-For": f"203.0.113.{n}",
                    "X-Real-IP": f"198.51.100.{n}",
                    "Forwarded": f"for=192.0.2.{n}",
                },
            )
            for n in range(40)
        ]
    assert [r.status_code for r in after] == [429] * 40
    assert OAuthApplication.objects.count() == 3


# --- redirect URIs (RFC 9700) -----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/oauth/callback",
        "http://127.0.0.1:3030/callback",
        "http://[::1]:3030/callback",
        "http://localhost:6274/oauth/callback",
        "cursor://anysphere.cursor-retrieval/oauth/callback",
        "vscode://vscode.github-authentication/did-authenticate",
    ],
)
def test_it_registers_https_loopback_http_and_app_scheme_redirects(client, uri):
    response = _post(client, _registration(redirect_uris=[uri]))
    assert response.status_code == 201, response.content
    assert response.json()["redirect_uris"] == [uri]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "uri",
    [
        "http://app.example.com/callback",
        "http://127.0.0.1.nip.example/callback",
        "http://10.0.0.5:3030/callback",
        "HTTP://client.example/callback",
    ],
)
def test_it_refuses_plain_http_redirects_to_remote_hosts(client, uri):
    response = _post(client, _registration(redirect_uris=[REDIRECT, uri]))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_redirect_uri"
    assert "https" in body["error_description"]
    assert not OAuthApplication.objects.exists()


@pytest.mark.django_db
def test_it_refuses_a_scheme_that_is_not_allowed(client):
    response = _post(client, _registration(redirect_uris=["javascript://alert(1)/x"]))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_redirect_uri"


@pytest.mark.django_db
def test_it_caps_the_number_of_redirect_uris(client):
    ten = [f"http://127.0.0.1:{3000 + n}/cb" for n in range(10)]
    assert _post(client, _registration(redirect_uris=ten)).status_code == 201
    many = [f"https://app.example.com/cb{n}" for n in range(5000)]
    response = _post(client, _registration(redirect_uris=many))
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_redirect_uri",
        "error_description": "Register at most 10 redirect URIs.",
    }
    assert _post(client, _registration(redirect_uris=[*ten, REDIRECT])).status_code == 400
    assert OAuthApplication.objects.count() == 1


@pytest.mark.django_db
def test_it_caps_the_length_of_a_redirect_uri(client):
    long_uri = "https://app.example.com/" + "a" * 2000
    response = _post(client, _registration(redirect_uris=[long_uri]))
    assert response.status_code == 400
    assert "at most 2000 characters" in response.json()["error_description"]


@pytest.mark.django_db
def test_a_registration_update_keeps_the_same_rules(client):
    created = _post(client, _registration()).json()
    response = client.put(
        f"/o/register/{created['client_id']}/",
        _registration(redirect_uris=["http://app.example.com/cb"]),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {created['registration_access_token']}",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"
    application = OAuthApplication.objects.get(client_id=created["client_id"])
    assert application.redirect_uris == REDIRECT
