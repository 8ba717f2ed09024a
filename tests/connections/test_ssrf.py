"""The SSRF guard on the one outbound HTTP path. No test traffic leaves loopback: the
guard refuses at its address check, and the connect step fails loudly if reached."""

from __future__ import annotations

import ipaddress

import anyio
import httpcore2
import pytest
from httpcore2._backends.auto import AutoBackend

from connections import outbound
from connections.outbound import address_is_forbidden
from connections.upstream import UpstreamError, UpstreamTarget, catalog_fetch


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:a00:1::",  # 6to4 wrapping 10.0.0.1
    ],
)
def test_private_loopback_link_local_and_reserved_addresses_are_forbidden(address):
    assert address_is_forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert not address_is_forbidden(ipaddress.ip_address(address))


@pytest.fixture
def guard_on(settings, monkeypatch):
    settings.GATEWAY_ALLOW_PRIVATE_UPSTREAMS = False

    async def must_not_connect(self, host, port, *args, **kwargs):
        raise AssertionError(f"the guard let a connection to {host}:{port} through")

    monkeypatch.setattr(AutoBackend, "connect_tcp", must_not_connect)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/mcp",
        "http://[::1]:8080/mcp",
        "http://localhost:8080/mcp",
    ],
)
def test_the_guard_refuses_private_upstreams_when_the_setting_is_off(guard_on, url):
    with pytest.raises(UpstreamError) as error:
        anyio.run(catalog_fetch, UpstreamTarget(url=url, transport="streamable-http"))

    assert error.value.kind == "refused"
    assert "GATEWAY_ALLOW_PRIVATE_UPSTREAMS" in error.value.message


def test_the_guard_checks_every_resolved_address(guard_on, monkeypatch):
    async def two_answers(host, port, **kwargs):
        return [
            (2, 1, 6, "", ("93.184.215.14", port)),
            (2, 1, 6, "", ("10.1.2.3", port)),
        ]

    monkeypatch.setattr(outbound.anyio, "getaddrinfo", two_answers)

    with pytest.raises(UpstreamError) as error:
        anyio.run(catalog_fetch, UpstreamTarget(url="http://rebind.test/mcp", transport="sse"))
    assert error.value.kind == "refused"
    assert "10.1.2.3" in error.value.message


def test_a_public_answer_is_connected_to_by_the_checked_address(guard_on, monkeypatch):
    connected: list[str] = []

    async def public_answer(host, port, **kwargs):
        return [(2, 1, 6, "", ("93.184.215.14", port))]

    async def record(self, host, port, *args, **kwargs):
        connected.append(host)
        raise httpcore2.ConnectError("stopped before any traffic")

    monkeypatch.setattr(outbound.anyio, "getaddrinfo", public_answer)
    monkeypatch.setattr(AutoBackend, "connect_tcp", record)

    with pytest.raises(UpstreamError) as error:
        anyio.run(
            catalog_fetch, UpstreamTarget(url="http://mcp.test/mcp", transport="streamable-http")
        )
    assert connected and set(connected) == {"93.184.215.14"}
    assert error.value.kind == "unreachable"


def test_saving_a_private_ip_literal_is_refused_when_the_setting_is_off(admin, settings):
    settings.GATEWAY_ALLOW_PRIVATE_UPSTREAMS = False

    response = admin.api().post(
        "/api/mcp-connections",
        {"name": "Metadata", "serverUrl": "http://169.254.169.254/"},
        format="json",
    )

    assert response.status_code == 400
    assert "private or reserved" in response.json()["details"]["serverUrl"][0]
