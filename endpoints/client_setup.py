"""Ready-to-copy set-up of an endpoint in the common MCP clients.

Each snippet follows the client's own documented format, filled with the
endpoint's URL; the server is named after the endpoint's slug (a name every
client accepts). Clients that handle OAuth themselves (Claude Code, VS Code,
Cursor, ChatGPT, mcp-remote for Claude Desktop) sign in through the gateway's
consent page on first use; the Inspector's command line is given an API token.
"""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass
from urllib.parse import quote, urlencode


@dataclass(frozen=True)
class Snippet:
    """One thing to copy: a command, a file's content, or a link."""

    label: str
    text: str
    kind: str = "code"  # code or link


@dataclass(frozen=True)
class ClientSetup:
    """How to connect one client, with its snippets and a short note."""

    key: str
    name: str
    note: str
    snippets: tuple[Snippet, ...]
    install_link: str | None = None


def _json(value: object) -> str:
    return json.dumps(value, indent=2)


def vscode_install_link(*, name: str, url: str) -> str:
    """VS Code's MCP URL handler: ``vscode:mcp/install?`` + the URI-encoded ``--add-mcp`` JSON."""
    config = json.dumps({"name": name, "type": "http", "url": url}, separators=(",", ":"))
    return "vscode:mcp/install?" + quote(config, safe="")


def cursor_install_link(*, name: str, url: str) -> str:
    """Cursor's deeplink: the server's ``mcp.json`` entry as base64 JSON in ``config``."""
    config = json.dumps({"url": url}, separators=(",", ":")).encode()
    return "cursor://anysphere.cursor-deeplink/mcp/install?" + urlencode(
        {"name": name, "config": base64.b64encode(config).decode()}
    )


def endpoint_client_setups(*, name: str, url: str) -> list[ClientSetup]:
    """The set-up of each supported client for the endpoint at ``url``, named ``name``."""
    quoted_url = shlex.quote(url)
    quoted_name = shlex.quote(name)
    return [
        ClientSetup(
            key="claude-code",
            name="Claude Code",
            note="Run in a terminal; Claude Code opens the gateway's sign-in page the first time "
            "(or run /mcp in Claude Code). Add --scope user to use it in every project.",
            snippets=(
                Snippet("Command", f"claude mcp add --transport http {quoted_name} {quoted_url}"),
            ),
        ),
        ClientSetup(
            key="claude-desktop",
            name="Claude Desktop",
            note="Add to claude_desktop_config.json (Settings → Developer → Edit Config) and "
            "restart Claude Desktop. mcp-remote (Node.js) bridges to the gateway and opens its "
            "sign-in page in your browser.",
            snippets=(
                Snippet(
                    "claude_desktop_config.json",
                    _json({"mcpServers": {name: {"command": "npx", "args": ["mcp-remote", url]}}}),
                ),
            ),
        ),
        ClientSetup(
            key="vscode",
            name="VS Code",
            note="Open the install link, or save the snippet as .vscode/mcp.json in your "
            "workspace; VS Code asks you to sign in when the server starts.",
            snippets=(
                Snippet(
                    ".vscode/mcp.json", _json({"servers": {name: {"type": "http", "url": url}}})
                ),
                Snippet("Install link", vscode_install_link(name=name, url=url), kind="link"),
            ),
            install_link=vscode_install_link(name=name, url=url),
        ),
        ClientSetup(
            key="cursor",
            name="Cursor",
            note="Open the install link, or add the snippet to ~/.cursor/mcp.json (or "
            ".cursor/mcp.json in a project); Cursor asks you to sign in.",
            snippets=(
                Snippet("mcp.json", _json({"mcpServers": {name: {"url": url}}})),
                Snippet("Install link", cursor_install_link(name=name, url=url), kind="link"),
            ),
            install_link=cursor_install_link(name=name, url=url),
        ),
        ClientSetup(
            key="chatgpt",
            name="ChatGPT",
            note="With developer mode on (Settings → Apps & Connectors → Advanced), create a "
            "connector with this URL and OAuth authentication. ChatGPT connects from the "
            "internet: the gateway must be reachable there over https.",
            snippets=(Snippet("Connector URL", url),),
        ),
        ClientSetup(
            key="inspector",
            name="MCP Inspector (command line)",
            note="Lists the tools the endpoint serves; create a token on the API tokens page "
            "and put it in GATEWAY_TOKEN first.",
            snippets=(
                Snippet(
                    "Command",
                    f"npx @modelcontextprotocol/inspector --cli {quoted_url} --transport http "
                    '--header "Authorization: Bearer $GATEWAY_TOKEN" --method tools/list',
                ),
            ),
        ),
    ]
