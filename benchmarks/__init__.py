"""Benchmarks of the gateway's MCP hot path (``make bench``); see benchmarks/README.md."""
