"""The client's address: the TCP peer, or what a trusted proxy says it is.

Anyone can send ``X-Forwarded-For``, so a header is never believed on its own:
only when the direct peer is one of ``GATEWAY_TRUSTED_PROXIES`` (IP addresses or
CIDR ranges; none by default) does the gateway read it. Each proxy appends the
address it received the request from, so the list is walked from the right,
skipping hops that are trusted proxies themselves; the first address that is not
is the client. ``X-Real-IP`` is never read: it cannot say which hop set it.

Every place that needs "who is calling" for a rate limit or a record uses
``client_address`` (a Django request) or ``client_address_of_scope`` (an ASGI
scope), so none of them trusts a header the others ignore.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Protocol

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RequestWithMeta(Protocol):
    """A Django ``HttpRequest`` or a DRF ``Request`` (both expose the WSGI-style META)."""

    @property
    def META(self) -> Mapping[str, Any]: ...


def trusted_proxy_networks(values: Iterable[str], *, name: str) -> tuple[IPNetwork, ...]:
    """Parse ``values`` (addresses or CIDR ranges) into networks.

    Raises ``ValueError`` naming the setting ``name`` and the value that is neither,
    so a typo fails at start-up instead of trusting nobody (or everybody).
    """
    networks: list[IPNetwork] = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
        except ValueError:
            raise ValueError(
                f"{name} must list IP addresses or CIDR ranges (such as 10.0.0.0/8), not {text!r}"
            ) from None
    return tuple(networks)


@lru_cache(maxsize=8)
def _networks(values: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return trusted_proxy_networks(values, name="GATEWAY_TRUSTED_PROXIES")


def _configured_networks() -> tuple[IPNetwork, ...]:
    from django.conf import settings

    return _networks(tuple(settings.GATEWAY_TRUSTED_PROXIES))


def _parse(text: str) -> IPAddress | None:
    """An address from a peer or a header entry: plain, bracketed, or with a port."""
    text = text.strip()
    if text.startswith("["):  # [2001:db8::1]:443
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # 203.0.113.7:5000
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    # A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address_from(
    *,
    peer: str,
    forwarded_for: Iterable[str],
    trusted: tuple[IPNetwork, ...] | None = None,
) -> str:
    """The client's address, given the TCP peer and the ``X-Forwarded-For`` values.

    ``trusted`` defaults to ``GATEWAY_TRUSTED_PROXIES``. With no trusted proxy, or
    a peer that is not one, the answer is the peer itself. Otherwise the forwarded
    list is walked from the right and the first untrusted address is the client;
    if an entry there cannot be read, the last trusted hop is the best answer.
    """
    networks = _configured_networks() if trusted is None else trusted
    peer_address = _parse(peer)
    if peer_address is None:
        return peer
    if not networks or not _is_trusted(peer_address, networks):
        return str(peer_address)
    hops = [entry for value in forwarded_for for entry in value.split(",") if entry.strip()]
    client = peer_address
    for entry in reversed(hops):
        address = _parse(entry)
        if address is None:
            break  # a trusted proxy would not write this; stop at what it did write
        client = address
        if not _is_trusted(address, networks):
            break
    return str(client)


def client_address(request: RequestWithMeta) -> str:
    """The address of the client that sent this Django request (see the module)."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    return client_address_from(
        peer=str(request.META.get("REMOTE_ADDR") or ""),
        forwarded_for=[forwarded] if forwarded else [],
    )


def client_address_of_scope(scope: Mapping[str, Any]) -> str:
    """The address of the client of an ASGI connection (see the module)."""
    client = scope.get("client")
    peer = str(client[0]) if client else ""
    forwarded = [
        value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name.lower() == b"x-forwarded-for"
    ]
    return client_address_from(peer=peer, forwarded_for=forwarded)
