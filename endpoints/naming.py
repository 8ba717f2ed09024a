"""Public names of federated tools and prompts, and public URIs of federated resources.

Pure functions, no ORM: the selectors feed them catalog rows.

Tools and prompts: ``<connection-slug>__<upstream name>`` by default; an
endpoint may serve names bare (the upstream name) where no other connected
server has the same name; an alias set by an admin always wins. Every public
name matches ``^[A-Za-z0-9_.-]{1,128}$`` (upstream names with other characters
are sanitised, long ones shortened with a hash) and is unique within the endpoint.

Resources and resource templates: the upstream URI behind a gateway prefix,
``mcp-gateway://<connection-slug>/<upstream uri>``. The prefix is a plain
string prefix, so a client that expands a rewritten template still produces a
URI that splits back into the connection and the upstream URI.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Final

NAME_MAX: Final = 128
PUBLIC_NAME: Final = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
PREFIX_SEPARATOR: Final = "__"
RESOURCE_SCHEME: Final = "mcp-gateway"
RESOURCE_PREFIX: Final = f"{RESOURCE_SCHEME}://"
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_.-]")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _with_suffix(name: str, seed: str) -> str:
    """``name`` made distinct with a short hash of ``seed``, still within 128 characters."""
    suffix = f"-{_digest(seed)}"
    return name[: NAME_MAX - len(suffix)] + suffix


def safe_name(raw: str) -> str:
    """``raw`` as a valid public name: other characters become ``_``; too long is shortened.

    A shortened name ends in a hash of the original, so two long names that
    share their first 119 characters still differ.
    """
    cleaned = _NOT_ALLOWED.sub("_", raw) or "_"
    if len(cleaned) > NAME_MAX:
        return _with_suffix(cleaned, raw)
    return cleaned


def prefixed_name(connection_slug: str, upstream_name: str) -> str:
    """The default public name: ``<connection-slug>__<upstream name>``."""
    return safe_name(f"{connection_slug}{PREFIX_SEPARATOR}{upstream_name}")


@dataclass(frozen=True)
class NameCandidate:
    """A tool or prompt that needs a public name within one endpoint."""

    ident: Hashable
    connection_slug: str
    upstream_name: str
    alias: str = ""


def assign_public_names(
    candidates: Iterable[NameCandidate], *, prefix: bool
) -> dict[Hashable, str]:
    """Give every candidate a public name, unique among them.

    With ``prefix`` off, a name is served bare unless another candidate has the
    same bare name (or alias): then each of those keeps its prefix, so both
    stay reachable and neither wins by accident. The candidates are all the
    tools (or prompts) the connected servers list, enabled or not, so enabling
    a tool never renames another. Aliases are validated when set; a collision
    that arises later (a new upstream tool, a pathological slug) is broken
    deterministically: aliases keep their name, others get a short hash suffix.
    """
    items = list(candidates)
    bare_counts: Counter[str] = Counter()
    if not prefix:
        bare_counts.update(c.alias or safe_name(c.upstream_name) for c in items)
    desired: dict[Hashable, str] = {}
    for candidate in items:
        if candidate.alias:
            desired[candidate.ident] = candidate.alias
        elif prefix:
            desired[candidate.ident] = prefixed_name(
                candidate.connection_slug, candidate.upstream_name
            )
        else:
            bare = safe_name(candidate.upstream_name)
            desired[candidate.ident] = (
                bare
                if bare_counts[bare] == 1
                else prefixed_name(candidate.connection_slug, candidate.upstream_name)
            )
    names: dict[Hashable, str] = {}
    taken: set[str] = set()
    order = sorted(
        items, key=lambda c: (not c.alias, c.connection_slug, c.upstream_name, str(c.ident))
    )
    for candidate in order:
        name = desired[candidate.ident]
        seed = f"{candidate.connection_slug}\0{candidate.upstream_name}"
        while name in taken:
            name = _with_suffix(desired[candidate.ident], seed)
            seed += "\0"
        taken.add(name)
        names[candidate.ident] = name
    return names


# --- resources --------------------------------------------------------------------


def public_resource_uri(connection_slug: str, upstream_uri: str) -> str:
    """The URI (or URI template) a client sees for an upstream resource."""
    return f"{RESOURCE_PREFIX}{connection_slug}/{upstream_uri}"


def split_public_resource_uri(uri: str) -> tuple[str, str] | None:
    """``(connection slug, upstream uri)`` of a rewritten URI, or None if it is not one."""
    if not uri.startswith(RESOURCE_PREFIX):
        return None
    slug, separator, upstream = uri[len(RESOURCE_PREFIX) :].partition("/")
    if not separator or not slug or not upstream:
        return None
    return slug, upstream


# How each RFC 6570 operator's expansion may look. Lenient on purpose: the
# question is only "does this read belong to an enabled template", and the
# upstream validates the rest.
_OPERATOR_PATTERNS: Final = {
    "": r"[^/?#]*",
    "+": r".*",
    "#": r"(?:#.*)?",
    ".": r"(?:\.[^/?#]*)*",
    "/": r"(?:/[^?#]*)*",
    ";": r"(?:;[^/?#]*)*",
    "?": r"(?:[?&][^#]*)?",
    "&": r"(?:&[^#]*)?",
}
_EXPRESSION = re.compile(r"\{([+#./;?&]?)[^{}]*\}")


@functools.lru_cache(maxsize=4096)
def template_pattern(uri_template: str) -> re.Pattern[str]:
    """A regular expression matching the URIs an RFC 6570 template expands to."""
    parts: list[str] = []
    position = 0
    for match in _EXPRESSION.finditer(uri_template):
        parts.append(re.escape(uri_template[position : match.start()]))
        parts.append(_OPERATOR_PATTERNS[match.group(1)])
        position = match.end()
    parts.append(re.escape(uri_template[position:]))
    return re.compile("".join(parts), re.DOTALL)
