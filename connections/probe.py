"""The health check's probe of an upstream: the handshake and the catalog through the
SDK, then a request the way calls go."""

from __future__ import annotations

from connections.streamable import (
    NotSent,
    SessionLost,
    UpstreamJsonRpcError,
    channel_for,
    short_id,
)
from connections.upstream import (
    CatalogSnapshot,
    SessionWire,
    UpstreamError,
    UpstreamTarget,
    catalog_fetch_with,
    upstream_session,
)


async def catalog_fetch_checked(target: UpstreamTarget) -> CatalogSnapshot:
    """Open a session, fetch the whole catalog, then prove that calls can go through.

    The handshake and the listing go through the SDK, but on Streamable HTTP the
    calls go through ``StreamableChannel``: a ``ping`` over it, with the session id
    the handshake gave, checks what calls use (how the server answers requests,
    whether it keeps its session), so a server whose calls fail is not shown
    active. Any JSON-RPC answer counts, an error included. Legacy SSE and stdio
    calls use the SDK session the listing just used. Raises ``UpstreamError``
    with a ``detail`` for admins.
    """
    wire = SessionWire()
    async with upstream_session(target, wire=wire) as client:
        snapshot = await catalog_fetch_with(client, call_timeout=target.call_timeout)
        if target.transport != "streamable-http":
            return snapshot
        channel = channel_for(client, target, wire)
        try:
            await channel.request("ping", None, timeout=target.call_timeout)
        except UpstreamJsonRpcError:
            pass  # answered: requests reach it and come back
        except SessionLost:
            raise UpstreamError(
                "protocol",
                "The server does not accept the session it opened: calls would fail.",
                detail=f"A ping right after the handshake was answered HTTP 404 for session "
                f"{short_id(wire.session_id or '')} (the id its initialize answer gave).",
            ) from None
        except NotSent as error:
            raise UpstreamError(
                "unreachable",
                f"Could not connect to {target.display} for calls ({error}).",
                detail=f"The handshake worked, but a new connection for a ping failed: {error}",
            ) from None
        finally:
            channel.close()
    return snapshot
