"""The SSRF guard on the one outbound HTTP path. No test traffic leaves loopback: the
guard refuses at its address check, and the connect step fails loudly if reached (the
resolver is replaced where a name is needed, so nothing is looked up either)."""

from __future__ import annotations

import ipaddress

import anyio
import httpcore2
import pytest
from httpcore2._backends.auto import AutoBackend

from connections import outbound
from connections.outbound import (
    address_is_forbidden,
    address_is_never_reachable,
    address_is_refused,
    literal_address_refusal,
    open_guarded_connection,
)
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
    assert "link-local or cloud metadata" in response.json()["details"]["serverUrl"][0]


# --- link-local and cloud metadata: refused even with private upstreams allowed ----------------

METADATA = ipaddress.IPv4Address("169.254.169.254")
NEVER_REACHABLE = [
    "169.254.169.254",  # AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack metadata
    "169.254.170.2",  # ECS task credentials
    "169.254.0.1",
    "fe80::1",
    "fe80::a9fe:a9fe",
    "fd00:ec2::254",  # AWS metadata over IPv6
    "100.100.100.200",  # Alibaba Cloud metadata
    "168.63.129.16",  # Azure platform address
    "::ffff:169.254.169.254",
    "::ffff:100.100.100.200",
    "::a9fe:a9fe",  # IPv4-compatible
    "64:ff9b::a9fe:a9fe",  # NAT64
    "2002:a9fe:a9fe::1",  # 6to4
    # Teredo: the client address is stored inverted in the last 32 bits.
    str(ipaddress.IPv6Address((0x2001 << 112) | (int(METADATA) ^ 0xFFFFFFFF))),
]
DEV_ALLOWED = [
    "127.0.0.1",
    "::1",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "100.64.0.1",
    "fd00::1",
    "fd00:ec2::253",  # AWS's DNS resolver, not its metadata service
    "::ffff:10.0.0.1",
]


@pytest.mark.parametrize("address", NEVER_REACHABLE)
def test_link_local_and_metadata_addresses_are_refused_whatever_the_setting(address):
    parsed = ipaddress.ip_address(address)
    assert address_is_never_reachable(parsed)
    assert address_is_refused(parsed, allow_private=True)
    assert address_is_refused(parsed, allow_private=False)


@pytest.mark.parametrize("address", DEV_ALLOWED)
def test_loopback_and_private_ranges_stay_allowed_in_development(address):
    parsed = ipaddress.ip_address(address)
    assert not address_is_never_reachable(parsed)
    assert not address_is_refused(parsed, allow_private=True)
    assert address_is_refused(parsed, allow_private=False)


@pytest.mark.parametrize("host", ["169.254.169.254", "[fe80::1]", "[::ffff:169.254.169.254]"])
def test_saving_a_metadata_literal_is_refused_with_private_upstreams_allowed(settings, host):
    settings.GATEWAY_ALLOW_PRIVATE_UPSTREAMS = True
    refusal = literal_address_refusal(host)
    assert refusal is not None
    assert "never connects" in refusal
    assert literal_address_refusal("10.0.0.1") is None
    assert literal_address_refusal("[::1]") is None


@pytest.fixture
def guard_dev(settings, monkeypatch):
    """Private upstreams allowed (the development default); connecting fails the test."""
    settings.GATEWAY_ALLOW_PRIVATE_UPSTREAMS = True

    async def must_not_connect(self, host, port, *args, **kwargs):
        raise AssertionError(f"the guard let a connection to {host}:{port} through")

    async def must_not_open(host, port, **kwargs):
        raise AssertionError(f"the guard let a connection to {host}:{port} through")

    monkeypatch.setattr(AutoBackend, "connect_tcp", must_not_connect)
    monkeypatch.setattr(outbound, "_open_connection", must_not_open)


def _answers(*addresses: str):
    async def getaddrinfo(host, port, **kwargs):
        family = lambda a: 10 if ":" in a else 2  # noqa: E731
        return [(family(a), 1, 6, "", (a, port)) for a in addresses]

    return getaddrinfo


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest", "http://[fd00:ec2::254]/"])
def test_the_guard_refuses_a_metadata_url_with_private_upstreams_allowed(guard_dev, url):
    with pytest.raises(UpstreamError) as error:
        anyio.run(catalog_fetch, UpstreamTarget(url=url, transport="streamable-http"))
    assert error.value.kind == "refused"
    assert "never connects" in error.value.message


def test_a_name_resolving_to_metadata_is_refused_with_private_upstreams_allowed(
    guard_dev, monkeypatch
):
    monkeypatch.setattr(outbound.anyio, "getaddrinfo", _answers("10.0.0.7", "169.254.169.254"))
    with pytest.raises(UpstreamError) as error:
        anyio.run(catalog_fetch, UpstreamTarget(url="http://metadata.test/", transport="sse"))
    assert error.value.kind == "refused"
    assert "169.254.169.254" in error.value.message


def test_the_lean_path_refuses_metadata_with_private_upstreams_allowed(guard_dev, monkeypatch):
    monkeypatch.setattr(outbound.anyio, "getaddrinfo", _answers("::ffff:169.254.169.254"))
    with pytest.raises(outbound.UpstreamAddressRefused):
        anyio.run(lambda: open_guarded_connection("metadata.test", 80, ssl_context=None, timeout=5))


def test_with_private_upstreams_allowed_each_checked_address_is_tried_in_turn(
    guard_dev, monkeypatch
):
    tried: list[str] = []

    async def refuse(host, port, **kwargs):
        tried.append(host)
        raise ConnectionRefusedError("stopped before any traffic")

    monkeypatch.setattr(outbound.anyio, "getaddrinfo", _answers("::1", "127.0.0.1"))
    monkeypatch.setattr(outbound, "_open_connection", refuse)
    with pytest.raises(ConnectionRefusedError):
        anyio.run(lambda: open_guarded_connection("localhost", 9, ssl_context=None, timeout=5))
    assert tried == ["::1", "127.0.0.1"]
