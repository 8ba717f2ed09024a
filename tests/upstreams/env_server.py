"""A stdio test upstream that reports on its environment without revealing it.

``python -m tests.upstreams.env_server [--crash VAR]``

- ``check_env(name, expected)`` answers whether the variable is set, whether it
  equals ``expected`` and its length, never its value;
- ``inherited()`` lists the names of the variables the process received;
- ``--crash VAR`` prints the value of VAR to stderr and exits with status 3 before
  any MCP traffic, like a misconfigured server that dumps its settings.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from mcp.server import MCPServer

server = MCPServer("env-test-server", version="1.0.0")


@server.tool()
def check_env(name: str, expected: str) -> dict[str, Any]:
    """Whether the variable ``name`` is set and equals ``expected`` (its value is not returned)."""
    value = os.environ.get(name)
    return {
        "set": value is not None,
        "matches": value == expected,
        "length": len(value or ""),
    }


@server.tool()
def inherited() -> list[str]:
    """The names of the environment variables this process received."""
    return sorted(os.environ)


def main(argv: list[str]) -> None:
    if len(argv) > 2 and argv[1] == "--crash":
        sys.stderr.write(f"fatal: cannot log in with {argv[2]}={os.environ.get(argv[2])}\n")
        sys.exit(3)
    server.run("stdio")


if __name__ == "__main__":
    main(sys.argv)
