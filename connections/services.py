"""Writes of connections: create, update, delete, with one set of validation rules
shared by the admin UI and the REST API."""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from connections.models import AuthType, Connection, Transport
from oauth.models import Organization


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()
"""Marks an argument of ``connection_update`` that the caller leaves unchanged."""

NAME_MAX = 100
URL_MAX = 2000
TOKEN_MAX = 8192
INSTRUCTIONS_MAX = 20_000
HEADERS_MAX = 32
HEADER_VALUE_MAX = 8192
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
# Headers the gateway sets itself: a connection may not override them.
RESERVED_HEADERS: Final = frozenset(
    {
        "authorization",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
        "proxy-authorization",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "last-event-id",
        "accept",
    }
)


def _clean_name(name: Any, errors: dict[str, list[str]]) -> str:
    if not isinstance(name, str) or not name.strip():
        errors.setdefault("name", []).append("Give the connection a name.")
        return ""
    name = name.strip()
    if len(name) > NAME_MAX:
        errors.setdefault("name", []).append(f"Use at most {NAME_MAX} characters.")
    return name


def _clean_server_url(url: Any, errors: dict[str, list[str]]) -> str:
    if not isinstance(url, str) or not url.strip():
        errors.setdefault("serverUrl", []).append("Give the server's URL.")
        return ""
    url = url.strip()
    problem = None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        problem = "This is not a valid URL."
    else:
        if parts.scheme not in ("http", "https"):
            problem = "The server URL must start with http:// or https://."
        elif not parts.hostname:
            problem = "The server URL must name a host."
        elif parts.username or parts.password:
            problem = "Put credentials in the token or headers, not in the URL."
        elif parts.fragment:
            problem = "The server URL cannot have a #fragment."
        elif len(url) > URL_MAX:
            problem = f"Use at most {URL_MAX} characters."
        elif any(ch.isspace() for ch in url):
            problem = "The server URL cannot contain spaces."
    if problem:
        errors.setdefault("serverUrl", []).append(problem)
    return url


def _clean_choice(value: Any, choices: type[Any], field: str, errors: dict[str, list[str]]) -> str:
    allowed = [str(choice) for choice in choices.values]
    if value not in allowed:
        errors.setdefault(field, []).append(f"Choose one of: {', '.join(allowed)}.")
        return ""
    return str(value)


def _clean_token(token: Any, errors: dict[str, list[str]]) -> str | None:
    if token is None or token == "":
        return None
    if not isinstance(token, str):
        errors.setdefault("token", []).append("The token must be a string.")
        return None
    token = token.strip()
    if len(token) > TOKEN_MAX:
        errors.setdefault("token", []).append(f"Use at most {TOKEN_MAX} characters.")
    elif any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in token):
        errors.setdefault("token", []).append(
            "The token cannot contain spaces or control characters."
        )
    return token or None


def _clean_headers(headers: Any, errors: dict[str, list[str]]) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, dict):
        errors.setdefault("headers", []).append("Headers must be an object of names to values.")
        return {}
    if len(headers) > HEADERS_MAX:
        errors.setdefault("headers", []).append(f"Use at most {HEADERS_MAX} headers.")
    cleaned: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            errors.setdefault("headers", []).append(
                f"{str(name)[:40]!r} is not a valid header name."
            )
            continue
        lowered = name.lower()
        if lowered in RESERVED_HEADERS:
            hint = " Use the token field for a bearer token." if lowered == "authorization" else ""
            errors.setdefault("headers", []).append(
                f"The gateway sets the {name} header itself.{hint}"
            )
            continue
        if lowered in seen:
            errors.setdefault("headers", []).append(f"The {name} header is given twice.")
            continue
        if not isinstance(value, str):
            errors.setdefault("headers", []).append(f"The value of {name} must be a string.")
            continue
        if len(value) > HEADER_VALUE_MAX or any(ch in value for ch in "\r\n\x00"):
            errors.setdefault("headers", []).append(
                f"The value of {name} must be one line of at most {HEADER_VALUE_MAX} characters."
            )
            continue
        seen.add(lowered)
        cleaned[name] = value.strip()
    return cleaned


def _clean_instructions(instructions: Any, errors: dict[str, list[str]]) -> str | None:
    if instructions is None:
        return None
    if not isinstance(instructions, str):
        errors.setdefault("instructions", []).append("Instructions must be text.")
        return None
    instructions = instructions.strip()
    if len(instructions) > INSTRUCTIONS_MAX:
        errors.setdefault("instructions", []).append(f"Use at most {INSTRUCTIONS_MAX} characters.")
    return instructions or None


def _check_name_free(
    *,
    organization: Organization,
    name: str,
    exclude: Connection | None,
    errors: dict[str, list[str]],
) -> None:
    if not name or "name" in errors:
        return
    taken = Connection.objects.filter(organization=organization, name__iexact=name)
    if exclude is not None:
        taken = taken.exclude(pk=exclude.pk)
    if taken.exists():
        errors.setdefault("name", []).append(f"A connection named {name!r} already exists.")


def _check_auth(
    *,
    auth_type: str,
    token: str | None,
    token_given: bool,
    errors: dict[str, list[str]],
    token_unreadable: bool,
) -> None:
    if auth_type == AuthType.BEARER and token is None and not token_unreadable:
        errors.setdefault("token", []).append("Bearer authentication needs a token.")
    elif auth_type == AuthType.NONE and token_given and token is not None:
        # Dropping it silently would lose what the admin typed.
        errors.setdefault("token", []).append(
            "A token is only used with bearer authentication: choose bearer or leave it empty."
        )


def _save(connection: Connection) -> None:
    """Save, turning a lost race on the unique name into the same message as the check."""
    try:
        with transaction.atomic():
            connection.save()
    except IntegrityError:
        raise ValidationError(
            {"name": [f"A connection named {connection.name!r} already exists."]}
        ) from None


def connection_create(
    *,
    organization: Organization,
    name: Any,
    server_url: Any,
    transport: Any = Transport.STREAMABLE_HTTP,
    auth_type: Any = AuthType.NONE,
    token: Any = None,
    headers: Any = None,
    instructions: Any = None,
) -> Connection:
    """Register an upstream MCP server, or raise ``ValidationError`` with per-field messages."""
    errors: dict[str, list[str]] = {}
    clean_name = _clean_name(name, errors)
    clean_url = _clean_server_url(server_url, errors)
    clean_transport = _clean_choice(transport, Transport, "transport", errors)
    clean_auth = _clean_choice(auth_type, AuthType, "authType", errors)
    clean_token = _clean_token(token, errors)
    clean_headers = _clean_headers(headers, errors)
    clean_instructions = _clean_instructions(instructions, errors)
    _check_auth(
        auth_type=clean_auth,
        token=clean_token,
        token_given=True,
        errors=errors,
        token_unreadable=False,
    )
    _check_name_free(organization=organization, name=clean_name, exclude=None, errors=errors)
    if errors:
        raise ValidationError(errors)
    connection = Connection(
        organization=organization,
        name=clean_name,
        server_url=clean_url,
        transport=clean_transport,
        auth_type=clean_auth,
        instructions=clean_instructions,
        credential=_credential(
            token=clean_token if clean_auth == AuthType.BEARER else None, headers=clean_headers
        ),
    )
    _save(connection)
    return connection


def _credential(*, token: str | None, headers: dict[str, str]) -> dict[str, Any] | None:
    if token is None and not headers:
        return None
    return {"token": token, "headers": headers}


def connection_update(
    *,
    connection: Connection,
    name: Any = UNSET,
    server_url: Any = UNSET,
    transport: Any = UNSET,
    auth_type: Any = UNSET,
    token: Any = UNSET,
    headers: Any = UNSET,
    instructions: Any = UNSET,
) -> Connection:
    """Change the given fields of a connection; arguments left ``UNSET`` keep their value.

    ``token`` and ``headers`` replace the stored secret when given (an empty
    value clears it); the stored secret is never read back to the caller.
    Switching ``auth_type`` to ``none`` drops the token.
    """
    errors: dict[str, list[str]] = {}
    new_name = connection.name if name is UNSET else _clean_name(name, errors)
    new_url = (
        connection.server_url if server_url is UNSET else _clean_server_url(server_url, errors)
    )
    new_transport = (
        connection.transport
        if transport is UNSET
        else _clean_choice(transport, Transport, "transport", errors)
    )
    new_auth = (
        connection.auth_type
        if auth_type is UNSET
        else _clean_choice(auth_type, AuthType, "authType", errors)
    )
    new_instructions = (
        connection.instructions
        if instructions is UNSET
        else _clean_instructions(instructions, errors)
    )
    unreadable = connection.credential_unreadable
    # A change of only the token or only the headers would have to merge with a
    # secret we cannot read.
    if unreadable and (token is UNSET) != (headers is UNSET):
        errors.setdefault("token", []).append(
            "The stored credential cannot be decrypted with the configured keys; "
            "give both the token and the headers again."
        )
    new_token = connection.token if token is UNSET else _clean_token(token, errors)
    new_headers = connection.headers if headers is UNSET else _clean_headers(headers, errors)
    keep_unreadable = unreadable and token is UNSET and headers is UNSET
    _check_auth(
        auth_type=new_auth,
        token=new_token,
        token_given=token is not UNSET,
        errors=errors,
        token_unreadable=keep_unreadable,
    )
    _check_name_free(
        organization=connection.organization, name=new_name, exclude=connection, errors=errors
    )
    if errors:
        raise ValidationError(errors)

    connection.name = new_name
    connection.server_url = new_url
    connection.transport = new_transport
    connection.auth_type = new_auth
    connection.instructions = new_instructions
    if not keep_unreadable:
        connection.credential = _credential(
            token=new_token if new_auth == AuthType.BEARER else None, headers=new_headers
        )
    _save(connection)
    return connection


@transaction.atomic
def connection_delete(*, connection: Connection) -> None:
    """Remove a connection and its stored credential."""
    connection.delete()
