"""The one outbound HTTP path to upstream servers, with the SSRF guard.

Every HTTP client the gateway uses to reach an upstream is made here. Its
network backend resolves the host itself, refuses private, loopback,
link-local, multicast and reserved addresses unless
``GATEWAY_ALLOW_PRIVATE_UPSTREAMS`` is on, and then connects to an address it
checked, so a DNS answer cannot change between the check and the connect. The
check runs on every new connection, so redirects are covered too.

Link-local addresses and the cloud metadata services are refused even with
private upstreams allowed: "private" means a server on this machine or the
office network (loopback, RFC 1918, unique-local), never the host's own
credentials at 169.254.169.254.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio
import httpcore2
import httpx2
from django.conf import settings
from httpcore2._backends.auto import AutoBackend
from httpcore2._backends.base import AsyncNetworkStream
from httpcore2._types import SOCKET_OPTION

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UpstreamAddressRefused(httpx2.ConnectError):
    """The upstream resolves to an address the gateway may not reach."""


# Refused whatever GATEWAY_ALLOW_PRIVATE_UPSTREAMS says: no MCP server lives there,
# and a request there reads the cloud host's identity and credentials.
NEVER_REACHABLE_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    # IPv4 link-local: the metadata service of AWS, GCP, Azure, Oracle, DigitalOcean
    # and OpenStack (169.254.169.254), ECS task credentials (169.254.170.2).
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6 (unique-local)
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata (shared space)
    # Azure's platform address (WireServer hands out VM extension settings): public,
    # so not even the strict guard refused it.
    ipaddress.ip_network("168.63.129.16/32"),
)
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries: IPv4-mapped, IPv4-compatible, NAT64
    (RFC 6052), 6to4 or Teredo; the host may route such an address to it."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_is_never_reachable(address: IPAddress) -> bool:
    """True for link-local and cloud metadata addresses, in any IPv6 form.

    These stay refused when ``GATEWAY_ALLOW_PRIVATE_UPSTREAMS`` is on.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and address_is_never_reachable(embedded):
            return True
    return any(
        address.version == network.version and address in network
        for network in NEVER_REACHABLE_NETWORKS
    )


def address_is_forbidden(address: IPAddress) -> bool:
    """True for every address that is not a public unicast address.

    Covers loopback, RFC 1918 and unique-local ranges, link-local, carrier-grade
    NAT, multicast, reserved and unspecified addresses, the cloud metadata
    addresses, and IPv6 forms that embed one of them (IPv4-mapped, 6to4, Teredo,
    NAT64).
    """
    if address_is_never_reachable(address):
        return True
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and address_is_forbidden(embedded):
            return True
    return not address.is_global or address.is_multicast or address.is_reserved


def address_is_refused(address: IPAddress, *, allow_private: bool) -> bool:
    """Whether the guard refuses ``address``: with private upstreams allowed only
    the never-reachable ones, otherwise everything that is not public."""
    if allow_private:
        return address_is_never_reachable(address)
    return address_is_forbidden(address)


def private_upstreams_allowed() -> bool:
    return bool(settings.GATEWAY_ALLOW_PRIVATE_UPSTREAMS)


def _refusal(host: str, address: IPAddress) -> UpstreamAddressRefused:
    where = f"{host} is" if host.strip("[]") == str(address) else f"{host} resolves to {address},"
    if address_is_never_reachable(address):
        return UpstreamAddressRefused(
            f"{where} a link-local or cloud metadata address the gateway never connects to "
            "(not even with GATEWAY_ALLOW_PRIVATE_UPSTREAMS=true)."
        )
    return UpstreamAddressRefused(
        f"{where} a private or reserved address the gateway does not connect to "
        "(an operator can allow it with GATEWAY_ALLOW_PRIVATE_UPSTREAMS=true)."
    )


def literal_address_refusal(host: str) -> str | None:
    """The refusal message for a host that is a refused IP literal, else None.

    Used to reject such URLs when a connection is saved; hostnames are checked
    when they are resolved.
    """
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None
    refused = address_is_refused(address, allow_private=private_upstreams_allowed())
    return str(_refusal(host, address)) if refused else None


class GuardedNetworkBackend(AutoBackend):
    """httpcore's backend with a resolve-check-connect step for TCP connections."""

    def __init__(self, *, allow_private: Callable[[], bool] = private_upstreams_allowed) -> None:
        self._allow_private = allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        addresses = await checked_addresses(
            host, port, timeout, allow_private=self._allow_private()
        )
        refused: httpcore2.ConnectError | None = None
        for address in addresses:
            try:
                return await super().connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore2.ConnectError as error:  # e.g. localhost's ::1 while it listens on v4
                refused = error
        assert refused is not None  # checked_addresses never answers an empty list
        raise refused


async def checked_addresses(
    host: str, port: int, timeout: float | None, *, allow_private: bool = False
) -> list[str]:
    """The addresses to connect to for ``host``, resolved here, none of them refused
    (see ``address_is_refused``). Raises ``UpstreamAddressRefused`` otherwise."""
    try:
        literal = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        literal = None
    if literal is not None:
        if address_is_refused(literal, allow_private=allow_private):
            raise _refusal(host, literal)
        return [host.strip("[]")]
    try:
        with anyio.fail_after(timeout):
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise httpcore2.ConnectTimeout(f"resolving {host} timed out") from None
    except OSError as error:
        raise httpcore2.ConnectError(f"cannot resolve {host}: {error}") from None
    addresses = list(
        dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos)
    )
    if not addresses:
        raise httpcore2.ConnectError(f"cannot resolve {host}")
    # Every answer must pass: otherwise a name with one public and one private
    # record could be steered to the private one.
    for address in addresses:
        if address_is_refused(address, allow_private=allow_private):
            raise _refusal(host, address)
    return [str(address) for address in addresses]


class GuardedTransport(httpx2.AsyncHTTPTransport):
    """httpx2's transport on the guarded backend; never uses environment proxies."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["trust_env"] = False
        super().__init__(**kwargs)
        pool = self._pool
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=pool._ssl_context,
            max_connections=pool._max_connections,
            max_keepalive_connections=pool._max_keepalive_connections,
            keepalive_expiry=pool._keepalive_expiry,
            http1=pool._http1,
            http2=pool._http2,
            network_backend=GuardedNetworkBackend(),
        )


def outbound_http_client(
    *,
    headers: Mapping[str, str] | None = None,
    timeout: httpx2.Timeout,
    event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
) -> httpx2.AsyncClient:
    """An httpx2 client for upstream traffic: guarded, no environment proxies, no redirects
    (the MCP transports follow same-origin redirects themselves, through this client)."""
    return httpx2.AsyncClient(
        headers=dict(headers or {}),
        timeout=timeout,
        transport=GuardedTransport(),
        trust_env=False,
        follow_redirects=False,
        event_hooks={key: list(value) for key, value in (event_hooks or {}).items()},
    )


# The connect step of ``open_guarded_connection`` (tests replace it to see the address).
_open_connection = asyncio.open_connection


async def _connect_first(
    addresses: list[str],
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    limit: int,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the first of the checked addresses that accepts one."""
    refused: ConnectionRefusedError | None = None
    for address in addresses:
        try:
            return await _open_connection(
                address,
                port,
                ssl=ssl_context,
                server_hostname=host if ssl_context is not None else None,
                limit=limit,
            )
        except ConnectionRefusedError as error:
            refused = error
    assert refused is not None  # checked_addresses never answers an empty list
    raise refused


async def open_guarded_connection(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None,
    timeout: float,
    limit: int = 2**16,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP (or TLS) connection to an upstream for the lean request path, guarded
    like every other: the host is resolved and checked here and the checked address
    is the one connected to. Raises ``UpstreamAddressRefused`` for a forbidden
    address and ``OSError`` (``TimeoutError`` included) when connecting fails."""
    async with asyncio.timeout(timeout):
        try:
            addresses = await checked_addresses(
                host, port, timeout, allow_private=private_upstreams_allowed()
            )
        except httpcore2.ConnectTimeout as error:
            raise TimeoutError(str(error)) from None
        except httpcore2.ConnectError as error:
            raise ConnectionError(str(error)) from None
        reader, writer = await _connect_first(addresses, host, port, ssl_context, limit)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer
