"""Writes of connections: create, update, delete, with one set of validation rules
shared by the admin UI and the REST API."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from audit.redaction import secret_values_register
from audit.services import management_event_record
from connections.credentials import (
    connection_credentials_changed,
    credential_for_call,
    credential_refresh_sync,
)
from connections.models import (
    AuthType,
    CatalogEntry,
    CatalogKind,
    CatalogState,
    Connection,
    ConnectionStatus,
    CredentialKind,
    CredentialMode,
    CredentialState,
    HealthCheck,
    Transport,
    UpstreamCredential,
)
from connections.outbound import literal_address_refusal
from connections.probe import catalog_fetch_checked
from connections.signals import catalog_changed
from connections.upstream import (
    CatalogSnapshot,
    UpstreamError,
    UpstreamTarget,
    definition_hash,
)
from oauth.models import Organization

logger = logging.getLogger(__name__)


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
        else:
            problem = literal_address_refusal(parts.hostname)
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


COMMAND_MAX = 1000
ARGS_MAX = 64
ARG_MAX = 4096
ENV_MAX = 64
ENV_VALUE_MAX = 16384
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Variables that change which program or libraries a command loads: the command an
# admin reads on the connection page must be what runs.
RESERVED_ENV: Final = frozenset({"PATH"})
RESERVED_ENV_PREFIXES: Final = ("LD_", "DYLD_")

STDIO_DISABLED: Final = (
    "stdio servers are turned off on this gateway: they run commands on the gateway host, "
    "so the operator must set GATEWAY_ALLOW_STDIO=true to allow them."
)


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def _clean_command(command: Any, errors: dict[str, list[str]]) -> str:
    if command is None or (isinstance(command, str) and not command.strip()):
        errors.setdefault("command", []).append(
            "Give the command that starts the server, e.g. npx or /usr/local/bin/mcp-server-time."
        )
        return ""
    if not isinstance(command, str):
        errors.setdefault("command", []).append("The command must be a string.")
        return ""
    command = command.strip()
    if len(command) > COMMAND_MAX:
        errors.setdefault("command", []).append(f"Use at most {COMMAND_MAX} characters.")
    elif _has_control(command):
        errors.setdefault("command", []).append("The command cannot contain control characters.")
    elif "/" in command and not command.startswith("/"):
        # A relative path would depend on the working directory of whichever process runs it.
        errors.setdefault("command", []).append(
            "Give the executable's name (found on the PATH) or its absolute path."
        )
    return command


def _clean_args(args: Any, errors: dict[str, list[str]]) -> list[str]:
    if args is None:
        return []
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        errors.setdefault("args", []).append("Arguments must be a list of strings.")
        return []
    if len(args) > ARGS_MAX:
        errors.setdefault("args", []).append(f"Use at most {ARGS_MAX} arguments.")
    for number, arg in enumerate(args, start=1):
        if len(arg) > ARG_MAX:
            errors.setdefault("args", []).append(
                f"Argument {number} is longer than {ARG_MAX} characters."
            )
        elif "\x00" in arg:
            errors.setdefault("args", []).append(f"Argument {number} contains a NUL character.")
    return list(args)


def _clean_env(env: Any, errors: dict[str, list[str]]) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, dict):
        errors.setdefault("env", []).append(
            "Environment variables must be an object of names to values."
        )
        return {}
    if len(env) > ENV_MAX:
        errors.setdefault("env", []).append(f"Use at most {ENV_MAX} environment variables.")
    cleaned: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            errors.setdefault("env", []).append(
                f"{str(name)[:40]!r} is not a valid variable name "
                "(letters, digits and _, not starting with a digit)."
            )
            continue
        if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
            errors.setdefault("env", []).append(
                f"{name} cannot be set: it changes which program or libraries the command loads."
            )
            continue
        if not isinstance(value, str):
            errors.setdefault("env", []).append(f"The value of {name} must be a string.")
            continue
        if len(value) > ENV_VALUE_MAX or "\x00" in value:
            errors.setdefault("env", []).append(
                f"The value of {name} must be at most {ENV_VALUE_MAX} characters, without NUL."
            )
            continue
        cleaned[name] = value
    return cleaned


def _present(value: Any) -> bool:
    """A value the caller actually gave (not left unset, not empty)."""
    return value is not UNSET and value is not None and value not in ("", [], {})


@dataclass
class _Reach:
    """How a connection reaches its server, validated: URL and auth for HTTP, command for stdio.

    ``credential`` is what to store, unless ``keep_credential`` (a stored secret
    that no key decrypts and that the caller did not replace).
    """

    server_url: str
    command: str
    args: list[str]
    auth_type: str
    credential: dict[str, Any] | None
    keep_credential: bool
    credential_mode: str = CredentialMode.SHARED


def _clean_reach(
    *,
    current: Connection | None,
    transport: str,
    server_url: Any,
    command: Any,
    args: Any,
    env: Any,
    auth_type: Any,
    token: Any,
    headers: Any,
    errors: dict[str, list[str]],
    credential_mode: Any = UNSET,
) -> _Reach:
    """Validate the transport-dependent fields; ``UNSET`` keeps the stored value.

    Stored values of the other transport family are dropped on a switch; values
    the caller gives for the other family are refused rather than silently lost.
    ``auth_type`` and ``credential_mode`` are already cleaned (or ``UNSET``).
    """
    if transport == Transport.STDIO:
        if credential_mode == CredentialMode.PERSONAL:
            errors.setdefault("credentialMode", []).append(
                "A stdio server runs once for everyone: its credentials are shared."
            )
        return _clean_stdio_reach(
            current=current,
            server_url=server_url,
            command=command,
            args=args,
            env=env,
            auth_type=auth_type,
            token=token,
            headers=headers,
            errors=errors,
        )
    if _present(command):
        errors.setdefault("command", []).append(
            "Only stdio servers have a command: choose the stdio transport, or leave it empty."
        )
    if _present(args):
        errors.setdefault("args", []).append("Only stdio servers take arguments.")
    if _present(env):
        errors.setdefault("env", []).append(
            "Only stdio servers take environment variables; "
            "give an HTTP server its secrets as a token or headers."
        )
    same = current is not None and not current.is_stdio
    new_url = (
        current.server_url
        if current is not None and same and server_url is UNSET
        else _clean_server_url(None if server_url is UNSET else server_url, errors)
    )
    new_auth = (
        auth_type
        if auth_type is not UNSET
        else (current.auth_type if current is not None else AuthType.NONE)
    )
    unreadable = current is not None and same and current.credential_unreadable
    # A change of only the token or only the headers would have to merge with a
    # secret we cannot read.
    if unreadable and (token is UNSET) != (headers is UNSET):
        errors.setdefault("token", []).append(
            "The stored credential cannot be decrypted with the configured keys; "
            "give both the token and the headers again."
        )
    new_token = (
        current.token
        if current is not None and same and token is UNSET
        else _clean_token(None if token is UNSET else token, errors)
    )
    new_headers = (
        current.headers
        if current is not None and same and headers is UNSET
        else _clean_headers(None if headers is UNSET else headers, errors)
    )
    keep = unreadable and token is UNSET and headers is UNSET
    new_mode = (
        credential_mode
        if credential_mode is not UNSET
        else (current.credential_mode if current is not None else CredentialMode.SHARED)
    )
    personal = new_mode == CredentialMode.PERSONAL
    _check_auth(
        auth_type=new_auth,
        token=new_token,
        token_given=token is not UNSET,
        errors=errors,
        token_unreadable=keep,
        personal=personal,
    )
    # Only a shared bearer connection keeps a token of its own; in personal mode each
    # user's token lives in their UpstreamCredential.
    shared_token = new_token if new_auth == AuthType.BEARER and not personal else None
    return _Reach(
        server_url=new_url,
        command="",
        args=[],
        auth_type=new_auth,
        credential=_credential(token=shared_token, headers=new_headers),
        keep_credential=keep,
        credential_mode=new_mode,
    )


def _clean_stdio_reach(
    *,
    current: Connection | None,
    server_url: Any,
    command: Any,
    args: Any,
    env: Any,
    auth_type: Any,
    token: Any,
    headers: Any,
    errors: dict[str, list[str]],
) -> _Reach:
    was_stdio = current is not None and current.is_stdio
    # Off: no new stdio server and no change to what one runs; renaming one stays possible.
    touches_process = not was_stdio or any(v is not UNSET for v in (command, args, env))
    if not settings.GATEWAY_ALLOW_STDIO and touches_process:
        errors.setdefault("transport", []).append(STDIO_DISABLED)
    new_command = (
        current.command
        if current is not None and was_stdio and command is UNSET
        else _clean_command(None if command is UNSET else command, errors)
    )
    new_args = (
        list(current.args)
        if current is not None and was_stdio and args is UNSET
        else _clean_args(None if args is UNSET else args, errors)
    )
    if _present(server_url):
        errors.setdefault("serverUrl", []).append(
            "A stdio server is started from its command and has no URL: leave it empty."
        )
    if auth_type in (AuthType.BEARER, AuthType.OAUTH):
        errors.setdefault("authType", []).append(
            "A stdio server gets its secrets as environment variables, not a bearer token "
            "or an OAuth sign-in: choose none."
        )
    if _present(token):
        errors.setdefault("token", []).append(
            "Only HTTP servers use a token: give a stdio server its secrets as "
            "environment variables."
        )
    if _present(headers):
        errors.setdefault("headers", []).append(
            "Only HTTP servers take headers: give a stdio server its secrets as "
            "environment variables."
        )
    keep = current is not None and was_stdio and env is UNSET and current.credential_unreadable
    new_env = (
        current.env
        if current is not None and was_stdio and env is UNSET
        else _clean_env(None if env is UNSET else env, errors)
    )
    return _Reach(
        server_url="",
        command=new_command,
        args=new_args,
        auth_type=AuthType.NONE,
        credential={"env": new_env} if new_env else None,
        keep_credential=keep,
    )


SLUG_MAX = 40
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,38}[a-z0-9])?$")


def _clean_slug(slug: Any, errors: dict[str, list[str]]) -> str:
    if not isinstance(slug, str) or not _SLUG.match(slug.strip()):
        errors.setdefault("slug", []).append(
            f"Use 1 to {SLUG_MAX} lowercase letters, digits, '-' or '_', "
            "starting and ending with a letter or digit."
        )
        return ""
    return slug.strip()


def _slug_from_name(*, organization: Organization, name: str) -> str:
    """A free slug derived from the name: ``Acme Orders`` -> ``acme-orders``."""
    base = slugify(name)[:SLUG_MAX].strip("-_") or "server"
    taken = set(
        Connection.objects.filter(
            organization=organization, slug__startswith=base[: SLUG_MAX - 4]
        ).values_list("slug", flat=True)
    )
    candidate, counter = base, 2
    while candidate in taken:
        suffix = f"-{counter}"
        candidate = base[: SLUG_MAX - len(suffix)].strip("-_") + suffix
        counter += 1
    return candidate


def _check_slug_free(
    *,
    organization: Organization,
    slug: str,
    exclude: Connection | None,
    errors: dict[str, list[str]],
) -> None:
    if not slug or "slug" in errors:
        return
    taken = Connection.objects.filter(organization=organization, slug=slug)
    if exclude is not None:
        taken = taken.exclude(pk=exclude.pk)
    if taken.exists():
        errors.setdefault("slug", []).append(f"Another connection already uses the slug {slug!r}.")


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
    personal: bool = False,
) -> None:
    given = token_given and token is not None
    if personal:
        if auth_type not in (AuthType.BEARER, AuthType.OAUTH):
            errors.setdefault("credentialMode", []).append(
                "Personal credentials need bearer or OAuth authentication: each user then "
                "brings a token or signs in to the server."
            )
        elif given:
            errors.setdefault("token", []).append(
                "With personal credentials each user brings their own token: leave the "
                "shared token empty."
            )
        return
    if auth_type == AuthType.BEARER and token is None and not token_unreadable:
        errors.setdefault("token", []).append("Bearer authentication needs a token.")
    elif auth_type == AuthType.NONE and given:
        # Dropping it silently would lose what the admin typed.
        errors.setdefault("token", []).append(
            "A token is only used with bearer authentication: choose bearer or leave it empty."
        )
    elif auth_type == AuthType.OAUTH and given:
        errors.setdefault("token", []).append(
            "An OAuth connection signs in to the server and takes no token: leave it empty."
        )


OAUTH_CLIENT_ID_MAX = 500
OAUTH_CLIENT_SECRET_MAX = 2000
OAUTH_SCOPES_MAX = 1000
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")  # RFC 6749 scope-token


def _clean_oauth_client(
    *,
    current: Connection | None,
    auth_type: str,
    client_id: Any,
    client_secret: Any,
    errors: dict[str, list[str]],
) -> Any:
    """The registration to store for an OAuth connection (``UNSET``: keep the stored one).

    An id an admin enters (with its secret, for a confidential client) is used as
    it is; an empty id clears it, and the gateway registers itself again (client
    ID metadata document or dynamic registration) at the next sign-in.
    """
    if auth_type != AuthType.OAUTH:
        if _present(client_id) or _present(client_secret):
            errors.setdefault("oauthClientId", []).append(
                "Only OAuth connections have a client id and secret."
            )
        return None
    was_oauth = current is not None and current.is_oauth
    if client_id is UNSET and client_secret is UNSET:
        return UNSET if was_oauth else None
    manual_id = (
        current.oauth_client_id
        if current is not None and was_oauth and current.oauth_registration == "manual"
        else None
    )
    if client_id is UNSET:
        if manual_id is None:
            errors.setdefault("oauthClientSecret", []).append("Give the client id with its secret.")
            return UNSET
        client_id = manual_id
    if client_id is None or (isinstance(client_id, str) and not client_id.strip()):
        if _present(client_secret):
            errors.setdefault("oauthClientSecret", []).append("Give the client id with its secret.")
        return None
    if not isinstance(client_id, str):
        errors.setdefault("oauthClientId", []).append("The client id must be a string.")
        return UNSET
    clean_id = client_id.strip()
    if len(clean_id) > OAUTH_CLIENT_ID_MAX or _has_control(clean_id):
        errors.setdefault("oauthClientId", []).append(
            f"Use at most {OAUTH_CLIENT_ID_MAX} characters, without control characters."
        )
    secret: str | None
    if client_secret is UNSET:
        secret = (
            current.oauth_client_secret if current is not None and manual_id == clean_id else None
        )
    elif client_secret is None or client_secret == "":
        secret = None
    elif not isinstance(client_secret, str):
        errors.setdefault("oauthClientSecret", []).append("The client secret must be a string.")
        secret = None
    else:
        secret = client_secret.strip() or None
        if secret is not None and (len(secret) > OAUTH_CLIENT_SECRET_MAX or _has_control(secret)):
            errors.setdefault("oauthClientSecret", []).append(
                f"Use at most {OAUTH_CLIENT_SECRET_MAX} characters, without control characters."
            )
    return {
        "method": "manual",
        "client_id": clean_id,
        "client_secret": secret,
        # Chosen from the authorization server's metadata at the first sign-in.
        "token_endpoint_auth_method": "",
        "issuer": "",
    }


def _clean_oauth_scopes(scopes: Any, errors: dict[str, list[str]]) -> str:
    if scopes is None:
        return ""
    if not isinstance(scopes, str):
        errors.setdefault("oauthScopes", []).append("Scopes must be a string.")
        return ""
    words = scopes.split()
    text = " ".join(words)
    if len(text) > OAUTH_SCOPES_MAX:
        errors.setdefault("oauthScopes", []).append(f"Use at most {OAUTH_SCOPES_MAX} characters.")
    elif any(not _SCOPE_TOKEN.match(word) for word in words):
        errors.setdefault("oauthScopes", []).append(
            "Scopes are words separated by spaces, without quotes or backslashes."
        )
    return text


def _save(connection: Connection) -> None:
    """Save, turning a lost race on a unique field into the same message as the check."""
    try:
        with transaction.atomic():
            connection.save()
    except IntegrityError as error:
        if "slug" in str(error):
            raise ValidationError(
                {"slug": [f"Another connection already uses the slug {connection.slug!r}."]}
            ) from None
        raise ValidationError(
            {"name": [f"A connection named {connection.name!r} already exists."]}
        ) from None


def connection_create(
    *,
    organization: Organization,
    name: Any,
    server_url: Any = None,
    transport: Any = Transport.STREAMABLE_HTTP,
    auth_type: Any = AuthType.NONE,
    token: Any = None,
    headers: Any = None,
    instructions: Any = None,
    slug: Any = None,
    command: Any = None,
    args: Any = None,
    env: Any = None,
    credential_mode: Any = CredentialMode.SHARED,
    oauth_client_id: Any = None,
    oauth_client_secret: Any = None,
    oauth_scopes: Any = None,
    actor: Any = None,
) -> Connection:
    """Register an upstream MCP server, or raise ``ValidationError`` with per-field messages.

    An HTTP server needs ``server_url``; a stdio server (``transport="stdio"``,
    only while ``GATEWAY_ALLOW_STDIO`` is on) needs ``command``, takes ``args``
    and its secrets as ``env``. ``slug`` (the prefix of its tools' public names)
    defaults to one derived from the name. ``credential_mode`` ``personal`` makes
    every user bring their own credential (a token with ``auth_type`` bearer, a
    sign-in with oauth); an OAuth connection may take the client id and secret
    its authorization server gave the gateway, and the scopes to ask for.
    ``actor`` (the acting user) is recorded in the activity log.
    """
    errors: dict[str, list[str]] = {}
    clean_name = _clean_name(name, errors)
    clean_slug = None if slug is None or slug == "" else _clean_slug(slug, errors)
    clean_transport = _clean_choice(transport, Transport, "transport", errors)
    clean_auth = _clean_choice(auth_type, AuthType, "authType", errors)
    clean_mode = _clean_choice(credential_mode, CredentialMode, "credentialMode", errors)
    reach = _clean_reach(
        current=None,
        transport=clean_transport,
        server_url=server_url,
        command=command,
        args=args,
        env=env,
        auth_type=clean_auth,
        token=token,
        headers=headers,
        errors=errors,
        credential_mode=clean_mode or UNSET,
    )
    oauth_client = _clean_oauth_client(
        current=None,
        auth_type=reach.auth_type,
        client_id=oauth_client_id,
        client_secret=oauth_client_secret,
        errors=errors,
    )
    clean_scopes = _clean_oauth_scopes(oauth_scopes, errors)
    if clean_scopes and reach.auth_type != AuthType.OAUTH:
        errors.setdefault("oauthScopes", []).append("Only OAuth connections ask for scopes.")
    clean_instructions = _clean_instructions(instructions, errors)
    _check_name_free(organization=organization, name=clean_name, exclude=None, errors=errors)
    if clean_slug is not None:
        _check_slug_free(organization=organization, slug=clean_slug, exclude=None, errors=errors)
    if errors:
        raise ValidationError(errors)
    connection = Connection(
        organization=organization,
        name=clean_name,
        slug=clean_slug or _slug_from_name(organization=organization, name=clean_name),
        server_url=reach.server_url,
        command=reach.command,
        args=reach.args,
        transport=clean_transport,
        auth_type=reach.auth_type,
        credential_mode=reach.credential_mode,
        oauth_client=None if oauth_client is UNSET else oauth_client,
        oauth_scopes=clean_scopes,
        instructions=clean_instructions,
        credential=reach.credential,
    )
    _save(connection)
    _check_soon(connection)
    management_event_record(
        organization_id=organization.pk,
        action="connection.created",
        target_type="connection",
        target_id=connection.pk,
        target_name=connection.name,
        actor=actor,
        details={
            "transport": connection.transport,
            "authType": connection.auth_type,
            "credentialMode": connection.credential_mode,
            "credentialSet": connection.credential is not None,
        },
    )
    return connection


def _check_soon(connection: Connection) -> None:
    """Queue a health check (which fetches the catalog) once the transaction commits.

    ``robust``: a broker that is down must not turn a saved connection into an
    error; the failure is logged and the beat's next pass checks it anyway.
    """
    from connections.tasks import connection_check  # tasks import this module

    connection_id = str(connection.pk)
    transaction.on_commit(lambda: connection_check.delay(connection_id), robust=True)


def _credential(*, token: str | None, headers: dict[str, str]) -> dict[str, Any] | None:
    if token is None and not headers:
        return None
    return {"token": token, "headers": headers}


def _audited_fields(connection: Connection) -> dict[str, Any]:
    """The connection's settings whose changes the management log names."""
    return {
        "name": connection.name,
        "slug": connection.slug,
        "serverUrl": connection.server_url,
        "command": connection.command,
        "args": connection.args,
        "transport": connection.transport,
        "authType": connection.auth_type,
        "credentialMode": connection.credential_mode,
        "oauthScopes": connection.oauth_scopes,
        "instructions": connection.instructions,
    }


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
    slug: Any = UNSET,
    command: Any = UNSET,
    args: Any = UNSET,
    env: Any = UNSET,
    credential_mode: Any = UNSET,
    oauth_client_id: Any = UNSET,
    oauth_client_secret: Any = UNSET,
    oauth_scopes: Any = UNSET,
    actor: Any = None,
) -> Connection:
    """Change the given fields of a connection; arguments left ``UNSET`` keep their value.

    ``token``, ``headers`` and ``env`` replace the stored secret when given (an
    empty value clears it); the stored secret is never read back to the caller.
    Switching ``auth_type`` to ``none`` drops the token; switching between HTTP
    and stdio drops what only the old transport used (URL, token and headers, or
    command, arguments and environment). Stored user credentials that no longer
    fit (another mode or authentication) are removed, and all of them when the
    server URL changes: a token must never reach a server it was not given for.
    """
    errors: dict[str, list[str]] = {}
    new_name = connection.name if name is UNSET else _clean_name(name, errors)
    new_slug = connection.slug if slug is UNSET else _clean_slug(slug, errors)
    new_transport = (
        connection.transport
        if transport is UNSET
        else _clean_choice(transport, Transport, "transport", errors)
    )
    clean_auth = (
        UNSET if auth_type is UNSET else _clean_choice(auth_type, AuthType, "authType", errors)
    )
    clean_mode = (
        UNSET
        if credential_mode is UNSET
        else _clean_choice(credential_mode, CredentialMode, "credentialMode", errors)
    )
    reach = _clean_reach(
        current=connection,
        transport=new_transport,
        server_url=server_url,
        command=command,
        args=args,
        env=env,
        auth_type=clean_auth,
        token=token,
        headers=headers,
        errors=errors,
        credential_mode=clean_mode or UNSET,
    )
    oauth_client = _clean_oauth_client(
        current=connection,
        auth_type=reach.auth_type,
        client_id=oauth_client_id,
        client_secret=oauth_client_secret,
        errors=errors,
    )
    new_scopes = (
        connection.oauth_scopes
        if oauth_scopes is UNSET
        else _clean_oauth_scopes(oauth_scopes, errors)
    )
    if reach.auth_type != AuthType.OAUTH:
        if oauth_scopes is not UNSET and new_scopes:
            errors.setdefault("oauthScopes", []).append("Only OAuth connections ask for scopes.")
        new_scopes = ""
    new_instructions = (
        connection.instructions
        if instructions is UNSET
        else _clean_instructions(instructions, errors)
    )
    _check_name_free(
        organization=connection.organization, name=new_name, exclude=connection, errors=errors
    )
    _check_slug_free(
        organization=connection.organization, slug=new_slug, exclude=connection, errors=errors
    )
    if errors:
        raise ValidationError(errors)

    reach_changed = (
        (
            reach.server_url,
            reach.command,
            reach.args,
            new_transport,
            reach.auth_type,
            reach.credential_mode,
        )
        != (
            connection.server_url,
            connection.command,
            connection.args,
            connection.transport,
            connection.auth_type,
            connection.credential_mode,
        )
    ) or any(value is not UNSET for value in (token, headers, env, oauth_client_id))
    url_changed = reach.server_url != connection.server_url
    before = _audited_fields(connection)
    connection.name = new_name
    connection.slug = new_slug
    connection.server_url = reach.server_url
    connection.command = reach.command
    connection.args = reach.args
    connection.transport = new_transport
    connection.auth_type = reach.auth_type
    connection.credential_mode = reach.credential_mode
    connection.oauth_scopes = new_scopes
    if oauth_client is not UNSET:
        connection.oauth_client = oauth_client
    connection.instructions = new_instructions
    if not reach.keep_credential:
        connection.credential = reach.credential
    with transaction.atomic():
        _save(connection)
        pruned = _credentials_prune(connection=connection, all_of_them=url_changed)
        if reach_changed or pruned:
            connection_credentials_changed(connection=connection)
    if reach_changed:
        _check_soon(connection)
    after = _audited_fields(connection)
    changed = sorted(key for key in after if after[key] != before[key])
    event = {
        "organization_id": connection.organization_id,
        "target_type": "connection",
        "target_id": connection.pk,
        "target_name": connection.name,
        "actor": actor,
    }
    if changed:
        management_event_record(action="connection.updated", details={"fields": changed}, **event)
    secrets = [
        n
        for n, v in (
            ("token", token),
            ("headers", headers),
            ("env", env),
            ("oauthClientId", oauth_client_id),
            ("oauthClientSecret", oauth_client_secret),
        )
        if v is not UNSET
    ]
    if secrets or pruned:
        details: dict[str, Any] = {"fields": secrets}
        if pruned:
            details["userCredentialsRemoved"] = pruned
        management_event_record(action="connection.credentials_changed", details=details, **event)
    return connection


def _credentials_prune(*, connection: Connection, all_of_them: bool) -> int:
    """Remove stored user credentials the connection no longer uses; how many went.

    ``all_of_them`` when the server URL changed: tokens were given for the old server.
    """
    stored = UpstreamCredential.objects.filter(connection=connection)
    if not all_of_them:
        if connection.is_personal:
            expected = CredentialKind.OAUTH if connection.is_oauth else CredentialKind.TOKEN
            stored = stored.filter(Q(user__isnull=True) | ~Q(kind=expected))
        elif connection.is_oauth:
            stored = stored.filter(Q(user__isnull=False) | ~Q(kind=CredentialKind.OAUTH))
    count = stored.count()
    if count:
        stored.delete()
    return count


@transaction.atomic
def connection_delete(*, connection: Connection, actor: Any = None) -> None:
    """Remove a connection and its stored credentials (users' own included)."""
    connection_credentials_changed(connection=connection)
    management_event_record(
        organization_id=connection.organization_id,
        action="connection.deleted",
        target_type="connection",
        target_id=connection.pk,
        target_name=connection.name,
        actor=actor,
    )
    connection.delete()


# --- catalog and health ---------------------------------------------------------

HEALTH_HISTORY_KEPT = 50
ERROR_BACKOFF_MAX = timedelta(minutes=30)


def upstream_target_for(
    *,
    connection: Connection,
    user_id: int | None = None,
    credential: UpstreamCredential | _Unset | None = UNSET,
) -> UpstreamTarget:
    """How to reach the connection's server on behalf of a user.

    A shared bearer connection sends its own token; a personal-mode connection
    the user's own credential; a shared OAuth connection the tokens an admin
    obtained. ``credential`` forces which stored credential to use (health
    checks). Raises ``UpstreamError`` when the user has no usable credential
    (``needs_credential``, ``needs_reauth``), with a message naming where to add it.

    A stdio connection is refused (kind ``disabled``) while ``GATEWAY_ALLOW_STDIO``
    is off, checked here at every use: one saved while it was on must not run
    after the operator turned it off.
    """
    if connection.is_stdio and not settings.GATEWAY_ALLOW_STDIO:
        raise UpstreamError("disabled", STDIO_DISABLED)
    if connection.credential_unreadable:
        raise UpstreamError(
            "credential",
            "The stored credential cannot be decrypted with the configured encryption keys.",
        )
    # The activity log never writes these values, wherever they turn up (issue 7).
    secret_values_register(
        [connection.token or "", *connection.headers.values(), *connection.env.values()]
    )
    if isinstance(credential, _Unset):
        credential = credential_for_call(connection=connection, user_id=user_id)
    if connection.is_stdio:
        return UpstreamTarget(
            url="",
            transport=connection.transport,
            command=connection.command,
            args=tuple(connection.args),
            env=connection.env,
            connect_timeout=float(connection.connect_timeout_seconds),
            call_timeout=float(connection.call_timeout_seconds),
        )
    headers = dict(connection.headers)
    if credential is not None:
        bearer = credential.bearer
        if bearer is None:
            raise UpstreamError("needs_reauth", "The stored credential holds no token.")
        secret_values_register(credential.secret_values())
        headers["Authorization"] = f"Bearer {bearer}"
        refreshable = credential.kind == CredentialKind.OAUTH
        return UpstreamTarget(
            url=connection.server_url,
            transport=connection.transport,
            headers=headers,
            connect_timeout=float(connection.connect_timeout_seconds),
            call_timeout=float(connection.call_timeout_seconds),
            credential_id=str(credential.pk),
            refreshable=refreshable,
            personal=credential.user_id is not None,
            expires_at=credential.expires_at.timestamp()
            if refreshable and credential.expires_at is not None
            else None,
        )
    if connection.auth_type == AuthType.BEARER and connection.token:
        headers["Authorization"] = f"Bearer {connection.token}"
    return UpstreamTarget(
        url=connection.server_url,
        transport=connection.transport,
        headers=headers,
        connect_timeout=float(connection.connect_timeout_seconds),
        call_timeout=float(connection.call_timeout_seconds),
    )


def health_check_credential(
    *, connection: Connection, user: Any = None
) -> UpstreamCredential | UpstreamError | None:
    """The credential a health check (and catalog refresh) of this connection uses.

    Shared mode: the connection's own. Personal mode: the checking admin's own when
    it is valid, else the valid credential of an admin, else of any member, most
    recently renewed first (the catalog is assumed the same for everyone, which is
    what an MCP server's tool list is in practice); with none, the check reports
    ``needs_credential`` and the connection stays ``unknown``.
    """
    if not connection.is_personal:
        if not connection.is_oauth:
            return None
        try:
            return credential_for_call(connection=connection, user_id=None)
        except UpstreamError as error:
            return error
    valid = UpstreamCredential.objects.filter(
        connection=connection,
        user__isnull=False,
        state=CredentialState.VALID,
        kind=CredentialKind.OAUTH if connection.is_oauth else CredentialKind.TOKEN,
    )
    if user is not None:
        own = valid.filter(user=user).first()
        if own is not None and not own.unreadable:
            return own
    admins = valid.filter(
        user__memberships__organization_id=connection.organization_id,
        user__memberships__role="admin",
    )
    for candidates in (admins, valid):
        for found in candidates.order_by("-updated_at")[:5]:
            if not found.unreadable:
                return found
    return UpstreamError(
        "needs_credential",
        "This server uses personal credentials and nobody has connected one yet, so it "
        "cannot be checked. Connect yours on the My connections page.",
    )


_CATALOG_LISTS = (
    (CatalogKind.TOOL, "tools", "name"),
    (CatalogKind.RESOURCE, "resources", "uri"),
    (CatalogKind.RESOURCE_TEMPLATE, "resource_templates", "uriTemplate"),
    (CatalogKind.PROMPT, "prompts", "name"),
)


@transaction.atomic
def connection_catalog_store(
    *, connection: Connection, snapshot: CatalogSnapshot
) -> dict[str, int]:
    """Store a fetched catalog: add new entries, mark changed and missing ones.

    A tool whose definition hash differs from the stored one becomes
    ``changed`` and keeps the old definition for review; an entry no longer
    listed becomes ``missing``; one that comes back is ``ok`` again unless its
    definition changed meanwhile. Returns counts of added, changed and missing entries.
    """
    now = timezone.now()
    counts = {"added": 0, "changed": 0, "missing": 0}
    instructions_changed = connection.server_instructions != snapshot.instructions
    returned = 0
    existing = {(e.kind, e.key): e for e in CatalogEntry.objects.filter(connection=connection)}
    seen: set[tuple[str, str]] = set()
    for kind, attribute, key_field in _CATALOG_LISTS:
        for position, definition in enumerate(getattr(snapshot, attribute)):
            key = str(definition.get(key_field, ""))[:2048]
            if not key or (kind, key) in seen:
                continue
            seen.add((kind, key))
            digest = definition_hash(definition)
            fields = {
                "name": str(definition.get("name", ""))[:512],
                "title": str(definition.get("title") or "")[:512],
                "description": str(definition.get("description") or ""),
                "position": position,
            }
            entry = existing.get((kind, key))
            if entry is None:
                CatalogEntry.objects.create(
                    connection=connection,
                    kind=kind,
                    key=key,
                    definition=definition,
                    definition_hash=digest,
                    **fields,
                )
                counts["added"] += 1
                continue
            for name, value in fields.items():
                setattr(entry, name, value)
            if entry.definition_hash != digest:
                if entry.state != CatalogState.CHANGED:
                    entry.previous_definition = entry.definition
                entry.state = CatalogState.CHANGED
                entry.changed_at = now
                counts["changed"] += 1
            elif entry.state == CatalogState.MISSING:
                entry.state = (
                    CatalogState.CHANGED
                    if entry.previous_definition is not None
                    else CatalogState.OK
                )
                returned += 1  # back after missing: served lists change again
            entry.definition = definition
            entry.definition_hash = digest
            entry.missing_since = None
            entry.save()
    for identity, entry in existing.items():
        if identity not in seen and entry.state != CatalogState.MISSING:
            entry.state = CatalogState.MISSING
            entry.missing_since = now
            entry.save(update_fields=["state", "missing_since"])
            counts["missing"] += 1
    connection.server_name = snapshot.server_name
    connection.server_version = snapshot.server_version
    connection.protocol_version = snapshot.protocol_version
    connection.server_instructions = snapshot.instructions
    connection.catalog_refreshed_at = now
    connection.save(
        update_fields=[
            "server_name",
            "server_version",
            "protocol_version",
            "server_instructions",
            "catalog_refreshed_at",
        ]
    )
    if any(counts.values()) or returned or instructions_changed:
        catalog_changed.send(sender=Connection, connection=connection, counts=counts)
    return counts


def _health_check_target(*, connection: Connection, user: Any) -> UpstreamTarget:
    chosen = health_check_credential(connection=connection, user=user)
    if isinstance(chosen, UpstreamError):
        raise chosen
    if (
        chosen is not None
        and chosen.kind == CredentialKind.OAUTH
        and chosen.expires_at is not None
        and chosen.expires_at <= timezone.now() + timedelta(seconds=5)
    ):
        outcome = credential_refresh_sync(str(chosen.pk))
        if outcome.status == "needs_reauth":
            raise UpstreamError("needs_reauth", outcome.message)
        chosen.refresh_from_db()
    return upstream_target_for(connection=connection, credential=chosen)


def connection_check_health(*, connection: Connection, user: Any = None) -> HealthCheck:
    """Check one connection now: open a session, fetch the catalog, send a request the
    way calls go (``catalog_fetch_checked``), record the outcome.

    Sets ``status`` (active or error), ``last_health_check_at``, the latency and
    on failure a short reason, keeps the last checks as history, and schedules
    the next check (backing off while the server keeps failing). Never raises
    for an upstream failure. ``user``: who asked for the check (a personal-mode
    connection is then checked with their own credential when they have one;
    see ``health_check_credential``). A personal-mode connection nobody has a
    credential for stays ``unknown``.
    """
    started = time.monotonic()
    snapshot: CatalogSnapshot | None = None
    failure: UpstreamError | None = None
    try:
        target = _health_check_target(connection=connection, user=user)
        snapshot = async_to_sync(catalog_fetch_checked)(target)
    except UpstreamError as error:
        failure = error
    except Exception as error:
        # Whatever an upstream does, a check ends as a recorded failure, never a 500
        # for the admin who asked for it; the exception stays in the check's detail.
        logger.warning(
            "Health check of connection %s failed unexpectedly: %r", connection.pk, error
        )
        failure = UpstreamError(
            "protocol",
            "The check failed unexpectedly.",
            detail=f"{type(error).__name__}: {error}"[:1000],
        )
    latency_ms = int((time.monotonic() - started) * 1000)
    now = timezone.now()
    if snapshot is not None:
        connection_catalog_store(connection=connection, snapshot=snapshot)
    interval = timedelta(seconds=settings.GATEWAY_HEALTH_CHECK_INTERVAL)
    failures = 0 if failure is None else connection.consecutive_failures + 1
    delay = (
        interval
        if failure is None
        else min(interval * 2 ** min(failures - 1, 5), ERROR_BACKOFF_MAX)
    )
    if failure is not None and failure.kind == "needs_credential":
        # Nothing to check with yet: not an error of the server, no back-off.
        failures, delay = 0, interval
    update = {
        "status": ConnectionStatus.ACTIVE
        if failure is None
        else (
            ConnectionStatus.UNKNOWN
            if failure.kind == "needs_credential"
            else ConnectionStatus.ERROR
        ),
        "last_health_check_at": now,
        "last_check_latency_ms": latency_ms,
        "last_check_error": "" if failure is None else failure.message[:500],
        "consecutive_failures": failures,
        "next_check_at": now + max(delay, interval),
        "check_claimed_until": None,
    }
    Connection.objects.filter(pk=connection.pk).update(**update, updated_at=now)
    for name, value in update.items():
        setattr(connection, name, value)
    check = HealthCheck.objects.create(
        connection=connection,
        checked_at=now,
        ok=failure is None,
        latency_ms=latency_ms,
        error_kind="" if failure is None else failure.kind,
        error="" if failure is None else failure.message[:500],
        detail="" if failure is None else failure.detail,
        protocol_version=snapshot.protocol_version if snapshot else "",
    )
    stale = HealthCheck.objects.filter(connection=connection).order_by("-checked_at")[
        HEALTH_HISTORY_KEPT:
    ]
    HealthCheck.objects.filter(pk__in=list(stale.values_list("pk", flat=True))).delete()
    return check


def connection_claim_check(*, connection_id: Any, lease: timedelta) -> bool:
    """Claim a connection for one check, so two workers never check it at once.

    A conditional UPDATE that must change exactly one row: the claim is free or
    its lease has run out (a worker that died mid-check does not block forever).
    """
    now = timezone.now()
    claimed = (
        Connection.objects.filter(pk=connection_id)
        .filter(Q(check_claimed_until__isnull=True) | Q(check_claimed_until__lt=now))
        .update(check_claimed_until=now + lease)
    )
    return claimed == 1
