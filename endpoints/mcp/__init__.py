"""The MCP protocol engine of the gateway: pure Python, no Django.

``engine.Engine`` answers JSON-RPC messages for one served endpoint view in
both protocol eras (the ``initialize`` handshake of 2024-11-05 … 2025-11-25
and the stateless 2026-07-28 revision); storage and upstream calls arrive
through the ``engine.Backend`` interface, which ``endpoints.provider``
implements with the ORM and the upstream pool.
"""
