"""The one outbound HTTP path to upstream servers, with the SSRF guard.

Every HTTP client the gateway uses to reach an upstream is made here. Its
network backend resolves the host itself, refuses private, loopback,
link-local (cloud metadata), multicast and reserved addresses unless
``GATEWAY_ALLOW_PRIVATE_UPSTREAMS`` is on, and then connects to the address it
checked, so a DNS answer cannot change between the check and the connect. The
check runs on every new connection, so redirects are covered too.
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


def address_is_forbidden(address: IPAddress) -> bool:
    """True for every address that is not a public unicast address.

    Covers loopback, RFC 1918 and unique-local ranges, link-local (where cloud
    metadata services such as 169.254.169.254 live), carrier-grade NAT,
    multicast, reserved and unspecified addresses, and IPv6 forms that embed
    one of them (IPv4-mapped, 6to4, Teredo).
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None and address_is_forbidden(embedded):
            return True
    return not address.is_global or address.is_multicast or address.is_reserved


def private_upstreams_allowed() -> bool:
    return bool(settings.GATEWAY_ALLOW_PRIVATE_UPSTREAMS)


def _refusal(host: str, address: IPAddress) -> UpstreamAddressRefused:
    where = f"{host} is" if host.strip("[]") == str(address) else f"{host} resolves to {address},"
    return UpstreamAddressRefused(
        f"{where} a private or reserved address the gateway does not connect to "
        "(an operator can allow it with GATEWAY_ALLOW_PRIVATE_UPSTREAMS=true)."
    )


def literal_address_refusal(host: str) -> str | None:
    """The refusal message for a host that is a forbidden IP literal, else None.

    Used to reject such URLs when a connection is saved; hostnames are checked
    when they are resolved.
    """
    if private_upstreams_allowed():
        return None
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    return str(_refusal(host, address)) if address_is_forbidden(address) else None


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
        target = host
        if not self._allow_private():
            target = await self._checked_address(host, port, timeout)
        return await super().connect_tcp(
            target,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def _checked_address(self, host: str, port: int, timeout: float | None) -> str:
        return await checked_address(host, port, timeout)


async def checked_address(host: str, port: int, timeout: float | None) -> str:
    """The address to connect to for ``host``: resolved here, every answer public."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        if address_is_forbidden(literal):
            raise _refusal(host, literal)
        return str(literal)
    try:
        with anyio.fail_after(timeout):
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise httpcore2.ConnectTimeout(f"resolving {host} timed out") from None
    except OSError as error:
        raise httpcore2.ConnectError(f"cannot resolve {host}: {error}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise httpcore2.ConnectError(f"cannot resolve {host}")
    # Every answer must be public: otherwise a name with one public and one
    # private record could be steered to the private one.
    for address in addresses:
        if address_is_forbidden(address):
            raise _refusal(host, address)
    return str(addresses[0])


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
    address = host
    if not private_upstreams_allowed():
        try:
            address = await checked_address(host, port, timeout)
        except httpcore2.ConnectTimeout as error:
            raise TimeoutError(str(error)) from None
        except httpcore2.ConnectError as error:
            raise ConnectionError(str(error)) from None
    async with asyncio.timeout(timeout):
        reader, writer = await _open_connection(
            address.strip("[]"),
            port,
            ssl=ssl_context,
            server_hostname=host if ssl_context is not None else None,
            limit=limit,
        )
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer
