"""No credential in daphne's access log.

daphne writes its access log (stdout by default) straight to a stream, with the
request target as the client sent it, query string included. Some callers put
credentials there: an MCP client that sends ``?access_token=`` (refused, but
the line was still written), or an OAuth redirect's ``?code=``. Their values are
masked before daphne formats the line.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import unquote_plus

# Query parameters whose values are credentials (lower case, as decoded).
SECRET_QUERY_NAMES: Final = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "code",
        "client_secret",
        "api_key",
        "apikey",
        "password",
    }
)
MASK: Final = "[masked]"
_PARAMETER = re.compile(r"(^|[&;])([^=&;]*)=([^&;]*)")


def query_secrets_masked(target: str) -> str:
    """The request target with the values of credential parameters replaced."""
    path, mark, query = target.partition("?")
    if not mark:
        return target
    fragment = ""
    if "#" in query:
        query, fragment = query.split("#", 1)
        fragment = "#" + fragment

    def mask(match: re.Match[str]) -> str:
        name = unquote_plus(match.group(2)).strip().lower()
        if name in SECRET_QUERY_NAMES:
            return f"{match.group(1)}{match.group(2)}={MASK}"
        return match.group(0)

    return f"{path}?{_PARAMETER.sub(mask, query)}{fragment}"


def daphne_access_log_install() -> None:
    """Mask credentials in the targets daphne's access log writes."""
    from daphne.access import AccessLogGenerator

    if getattr(AccessLogGenerator, "_gateway_masked", False):
        return
    original = AccessLogGenerator.__call__

    def __call__(self: Any, protocol: str, action: str, details: dict[str, Any]) -> None:
        if isinstance(details.get("path"), str):
            details = {**details, "path": query_secrets_masked(details["path"])}
        original(self, protocol, action, details)

    AccessLogGenerator.__call__ = __call__
    AccessLogGenerator._gateway_masked = True
