"""Writes of endpoints and their toggles, with one set of rules for the admin UI and the API.

Every write that changes what an endpoint serves publishes ``endpoint.changed``
(see ``endpoints.events``) once its transaction commits.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from audit.services import management_event_record
from connections.models import CatalogEntry, CatalogKind, Connection
from endpoints import naming
from endpoints.events import ChangeKind, endpoint_changed_on_commit
from endpoints.models import (
    Endpoint,
    EndpointAccess,
    EndpointConnection,
    EndpointToggle,
)
from endpoints.selectors import CatalogRow, endpoint_catalog_rows, endpoint_sessions
from oauth.models import AccessDuration, ApiToken, Membership, OAuthAuthorization, Organization


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()
"""Marks an argument that the caller leaves unchanged."""

NAME_MAX = 100
DESCRIPTION_MAX = 2000
SLUG_MAX = 63
OVERRIDE_MAX = 10_000
CONNECTIONS_MAX = 100
CHANGES_MAX = 5000
# DNS-label safe, so an endpoint can also be served at https://<slug>.<domain>/mcp.
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
SLUG_RULE = (
    f"Use 1 to {SLUG_MAX} lowercase letters, digits or '-', "
    "starting and ending with a letter or digit."
)
ALIAS_RULE = "Use 1 to 128 letters, digits, '_', '.' or '-'."

Errors = dict[str, list[str]]


def _add(errors: Errors, key: str, message: str) -> None:
    errors.setdefault(key, []).append(message)


# --- endpoints ----------------------------------------------------------------------


def _clean_name(name: Any, errors: Errors) -> str:
    if not isinstance(name, str) or not name.strip():
        _add(errors, "name", "Give the endpoint a name.")
        return ""
    name = name.strip()
    if len(name) > NAME_MAX:
        _add(errors, "name", f"Use at most {NAME_MAX} characters.")
    return name


def _clean_description(description: Any, errors: Errors) -> str:
    if description is None:
        return ""
    if not isinstance(description, str):
        _add(errors, "description", "The description must be text.")
        return ""
    description = description.strip()
    if len(description) > DESCRIPTION_MAX:
        _add(errors, "description", f"Use at most {DESCRIPTION_MAX} characters.")
    return description


def _clean_slug(slug: Any, errors: Errors) -> str:
    if not isinstance(slug, str) or not _SLUG.match(slug.strip()):
        _add(errors, "slug", SLUG_RULE)
        return ""
    return slug.strip()


def _clean_access(access: Any, errors: Errors) -> str:
    if access not in EndpointAccess.values:
        _add(errors, "access", f"Choose one of: {', '.join(EndpointAccess.values)}.")
        return EndpointAccess.ORGANIZATION
    return str(access)


def _clean_prefix(prefix: Any, errors: Errors) -> bool:
    if not isinstance(prefix, bool):
        _add(errors, "prefixToolNames", "Give true or false.")
        return True
    return prefix


def _clean_flag(value: Any, key: str, errors: Errors) -> bool:
    if not isinstance(value, bool):
        _add(errors, key, "Give true or false.")
        return False
    return value


def _clean_connections(
    organization: Organization, connection_ids: Any, errors: Errors
) -> list[Connection]:
    """The organisation's connections with these ids; another tenant's id reads as unknown."""
    if connection_ids is None:
        return []
    if isinstance(connection_ids, str | bytes) or not isinstance(connection_ids, Iterable):
        _add(errors, "connectionIds", "Give a list of connection ids.")
        return []
    wanted: list[uuid.UUID] = []
    for raw in connection_ids:
        try:
            key = raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw))
        except ValueError:
            _add(errors, "connectionIds", f"{str(raw)[:60]!r} is not a connection id.")
            continue
        if key not in wanted:
            wanted.append(key)
    if len(wanted) > CONNECTIONS_MAX:
        _add(errors, "connectionIds", f"An endpoint federates at most {CONNECTIONS_MAX} servers.")
        return []
    found = {c.pk: c for c in Connection.objects.filter(organization=organization, pk__in=wanted)}
    for key in wanted:
        if key not in found:
            _add(errors, "connectionIds", f"No connection with id {key} in this organisation.")
    return [found[key] for key in wanted if key in found]


def _clean_members(organization: Organization, member_ids: Any, errors: Errors) -> list[Membership]:
    """Memberships of the organisation for these user ids."""
    if member_ids is None:
        return []
    if isinstance(member_ids, str | bytes) or not isinstance(member_ids, Iterable):
        _add(errors, "memberIds", "Give a list of user ids.")
        return []
    wanted: list[int] = []
    for raw in member_ids:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            _add(errors, "memberIds", f"{str(raw)[:60]!r} is not a user id.")
            continue
        try:
            user_id = int(raw)
        except ValueError:
            user_id = 0
        if not 0 < user_id < 2**63:  # beyond a database integer: no such user either
            _add(errors, "memberIds", f"{str(raw)[:60]!r} is not a user id.")
            continue
        if user_id not in wanted:
            wanted.append(user_id)
    found = {
        m.user_id: m
        for m in Membership.objects.filter(organization=organization, user_id__in=wanted)
    }
    for user_id in wanted:
        if user_id not in found:
            _add(errors, "memberIds", f"User {user_id} is not a member of this organisation.")
    return [found[user_id] for user_id in wanted if user_id in found]


def _slug_from_name(name: str) -> str:
    """A free slug derived from the name: ``Sales team`` -> ``sales-team`` (or ``-2``…)."""
    base = slugify(name).replace("_", "-")[:SLUG_MAX].strip("-") or "endpoint"
    taken = set(
        Endpoint.objects.filter(slug__startswith=base[: SLUG_MAX - 4]).values_list(
            "slug", flat=True
        )
    )
    candidate, counter = base, 2
    while candidate in taken:
        suffix = f"-{counter}"
        candidate = base[: SLUG_MAX - len(suffix)].strip("-") + suffix
        counter += 1
    return candidate


def _check_free(
    *, organization: Organization, name: str, slug: str, exclude: Endpoint | None, errors: Errors
) -> None:
    others = Endpoint.objects.all() if exclude is None else Endpoint.objects.exclude(pk=exclude.pk)
    if (
        name
        and "name" not in errors
        and others.filter(organization=organization, name__iexact=name).exists()
    ):
        _add(errors, "name", f"An endpoint named {name!r} already exists.")
    # Slugs are URLs, so they are unique across organisations.
    if slug and "slug" not in errors and others.filter(slug=slug).exists():
        _add(errors, "slug", f"The slug {slug!r} is already taken; choose another.")


def _save(endpoint: Endpoint) -> None:
    """Save, turning a lost race on a unique field into the same message as the check."""
    try:
        with transaction.atomic():
            endpoint.save()
    except IntegrityError as error:
        if "slug" in str(error):
            raise ValidationError(
                {"slug": [f"The slug {endpoint.slug!r} is already taken; choose another."]}
            ) from None
        raise ValidationError(
            {"name": [f"An endpoint named {endpoint.name!r} already exists."]}
        ) from None


def _set_connections(endpoint: Endpoint, connections: list[Connection]) -> bool:
    """Make the endpoint federate exactly these connections; True if that changed anything.

    Removing a server drops this endpoint's toggles of its entries: adding it
    back later starts again with everything disabled, as a new server does.
    """
    current = set(
        EndpointConnection.objects.filter(endpoint=endpoint).values_list("connection_id", flat=True)
    )
    wanted = {c.pk for c in connections}
    removed = current - wanted
    added = wanted - current
    if removed:
        EndpointConnection.objects.filter(endpoint=endpoint, connection_id__in=removed).delete()
        EndpointToggle.objects.filter(endpoint=endpoint, entry__connection_id__in=removed).delete()
    EndpointConnection.objects.bulk_create(
        [EndpointConnection(endpoint=endpoint, connection_id=key) for key in added]
    )
    return bool(removed or added)


@transaction.atomic
def endpoint_create(
    *,
    organization: Organization,
    name: Any,
    description: Any = "",
    slug: Any = None,
    connection_ids: Any = (),
    access: Any = EndpointAccess.ORGANIZATION,
    member_ids: Any = (),
    prefix_names: Any = True,
    max_access_seconds: Any = AccessDuration.QUARTER,
    pii_filter: Any = False,
    actor: Any = None,
) -> Endpoint:
    """Create an endpoint, or raise ``ValidationError`` with per-field messages (API names).

    ``slug`` (the URL) defaults to one derived from the name. Every tool of its
    connections starts disabled. ``pii_filter`` redacts personal data in results.
    ``actor`` (the acting user) is recorded in the activity log.
    """
    errors: Errors = {}
    clean_name = _clean_name(name, errors)
    clean_description = _clean_description(description, errors)
    clean_slug = None if slug is None or slug == "" else _clean_slug(slug, errors)
    connections = _clean_connections(organization, connection_ids, errors)
    clean_access = _clean_access(access, errors)
    members = _clean_members(organization, member_ids, errors)
    clean_prefix = _clean_prefix(prefix_names, errors)
    clean_max_access = _clean_max_access(max_access_seconds, errors)
    clean_pii = _clean_flag(pii_filter, "piiFilter", errors)
    _check_free(
        organization=organization,
        name=clean_name,
        slug=clean_slug or "",
        exclude=None,
        errors=errors,
    )
    if errors:
        raise ValidationError(errors)
    endpoint = Endpoint(
        organization=organization,
        name=clean_name,
        description=clean_description,
        slug=clean_slug or _slug_from_name(clean_name),
        access=clean_access,
        prefix_names=clean_prefix,
        max_access_seconds=clean_max_access,
        pii_filter=clean_pii,
    )
    _save(endpoint)
    _set_connections(endpoint, connections)
    endpoint.members.set(members)
    management_event_record(
        organization_id=organization.pk,
        action="endpoint.created",
        target_type="endpoint",
        target_id=endpoint.pk,
        target_name=endpoint.name,
        actor=actor,
        details={"slug": endpoint.slug, "connectionIds": [str(c.pk) for c in connections]},
    )
    return endpoint


@transaction.atomic
def endpoint_update(
    *,
    endpoint: Endpoint,
    name: Any = UNSET,
    description: Any = UNSET,
    slug: Any = UNSET,
    connection_ids: Any = UNSET,
    access: Any = UNSET,
    member_ids: Any = UNSET,
    prefix_names: Any = UNSET,
    max_access_seconds: Any = UNSET,
    pii_filter: Any = UNSET,
    actor: Any = None,
) -> Endpoint:
    """Change the given fields of an endpoint; arguments left ``UNSET`` keep their value.

    ``connection_ids`` and ``member_ids`` replace the lists. Publishes what
    changed: the served lists when the servers or the naming changed, ``access``
    when who may use it changed, ``endpoint`` for its name, description or URL.
    """
    organization = endpoint.organization
    errors: Errors = {}
    new_name = endpoint.name if name is UNSET else _clean_name(name, errors)
    new_description = (
        endpoint.description if description is UNSET else _clean_description(description, errors)
    )
    new_slug = endpoint.slug if slug is UNSET else _clean_slug(slug, errors)
    connections = (
        None
        if connection_ids is UNSET
        else _clean_connections(organization, connection_ids, errors)
    )
    new_access = endpoint.access if access is UNSET else _clean_access(access, errors)
    members = None if member_ids is UNSET else _clean_members(organization, member_ids, errors)
    new_prefix = (
        endpoint.prefix_names if prefix_names is UNSET else _clean_prefix(prefix_names, errors)
    )
    new_max_access = (
        endpoint.max_access_seconds
        if max_access_seconds is UNSET
        else _clean_max_access(max_access_seconds, errors)
    )
    new_pii = (
        endpoint.pii_filter if pii_filter is UNSET else _clean_flag(pii_filter, "piiFilter", errors)
    )
    _check_free(
        organization=organization, name=new_name, slug=new_slug, exclude=endpoint, errors=errors
    )
    if errors:
        raise ValidationError(errors)

    kinds: set[ChangeKind] = set()
    if (new_name, new_description, new_slug) != (
        endpoint.name,
        endpoint.description,
        endpoint.slug,
    ):
        kinds.add("endpoint")
    if new_prefix != endpoint.prefix_names:
        kinds.update(("tools", "resources", "prompts"))
    if new_access != endpoint.access:
        kinds.add("access")
    if new_pii != endpoint.pii_filter:
        kinds.add("endpoint")
    fields = {
        "name": (endpoint.name, new_name),
        "description": (endpoint.description, new_description),
        "slug": (endpoint.slug, new_slug),
        "access": (endpoint.access, new_access),
        "prefixToolNames": (endpoint.prefix_names, new_prefix),
        "piiFilter": (endpoint.pii_filter, new_pii),
    }
    changed = sorted(key for key, (old, new) in fields.items() if old != new)
    endpoint.pii_filter = new_pii
    endpoint.name = new_name
    endpoint.description = new_description
    endpoint.slug = new_slug
    endpoint.access = new_access
    endpoint.prefix_names = new_prefix
    endpoint.max_access_seconds = new_max_access
    _save(endpoint)
    if connections is not None and _set_connections(endpoint, connections):
        kinds.update(("tools", "resources", "prompts"))
        changed.append("connectionIds")
    if members is not None:
        before = set(endpoint.members.values_list("pk", flat=True))
        if before != {m.pk for m in members}:
            endpoint.members.set(members)
            kinds.add("access")
            changed.append("memberIds")
    if kinds:
        endpoint_changed_on_commit(endpoint_id=endpoint.pk, kinds=kinds)
    if changed:
        management_event_record(
            organization_id=organization.pk,
            action="endpoint.updated",
            target_type="endpoint",
            target_id=endpoint.pk,
            target_name=endpoint.name,
            actor=actor,
            details={"fields": changed},
        )
    return endpoint


@transaction.atomic
def endpoint_delete(*, endpoint: Endpoint, actor: Any = None) -> None:
    """Remove an endpoint and its toggles; its URL stops answering."""
    endpoint_id = endpoint.pk
    management_event_record(
        organization_id=endpoint.organization_id,
        action="endpoint.deleted",
        target_type="endpoint",
        target_id=endpoint.pk,
        target_name=endpoint.name,
        actor=actor,
    )
    endpoint.delete()
    endpoint_changed_on_commit(endpoint_id=endpoint_id, kinds=["deleted"])


# --- toggles, aliases, descriptions -------------------------------------------------


@dataclass
class CatalogChange:
    """One requested change to an entry of an endpoint's catalog.

    The entry is named as the API names it: the connection's id, the kind and
    the upstream key (tool or prompt name, resource URI, URI template). ``label``
    prefixes error keys (``tools[3]``), so a bulk request says which item is wrong.
    """

    connection_id: Any
    kind: str
    key: Any
    enabled: Any = UNSET
    alias: Any = UNSET
    description: Any = UNSET
    label: str = ""

    def field(self, name: str) -> str:
        return f"{self.label}.{name}" if self.label else name


@dataclass
class CatalogUpdate:
    """What ``endpoint_catalog_update`` did."""

    changed: int = 0
    groups: set[str] = field(default_factory=set)
    skipped: list[CatalogRow] = field(default_factory=list)


_KEY_FIELD = {
    CatalogKind.TOOL: "upstreamName",
    CatalogKind.PROMPT: "upstreamName",
    CatalogKind.RESOURCE: "upstreamUri",
    CatalogKind.RESOURCE_TEMPLATE: "upstreamUri",
}
_KIND_WORD = {
    CatalogKind.TOOL: "tool",
    CatalogKind.PROMPT: "prompt",
    CatalogKind.RESOURCE: "resource",
    CatalogKind.RESOURCE_TEMPLATE: "resource template",
}


def _clean_alias(change: CatalogChange, row: CatalogRow, errors: Errors) -> str | _Unset:
    if change.alias is UNSET:
        return UNSET
    if change.alias is None or change.alias == "":
        return ""
    if row.group == "resources":
        _add(
            errors,
            change.field("alias"),
            "Resources keep their URI; only tools and prompts take an alias.",
        )
        return UNSET
    if not isinstance(change.alias, str) or not naming.PUBLIC_NAME.match(change.alias.strip()):
        _add(errors, change.field("alias"), ALIAS_RULE)
        return UNSET
    return change.alias.strip()


def _clean_override(change: CatalogChange, errors: Errors) -> str | _Unset | None:
    if change.description is UNSET:
        return UNSET
    if change.description is None:
        return None
    if not isinstance(change.description, str):
        _add(errors, change.field("description"), "The description must be text or null.")
        return UNSET
    text = change.description.strip()
    if len(text) > OVERRIDE_MAX:
        _add(errors, change.field("description"), f"Use at most {OVERRIDE_MAX} characters.")
        return UNSET
    # An empty override would hide what the tool does; empty means "the upstream's" again.
    return text or None


def _check_aliases(
    rows: list[CatalogRow], new_aliases: dict[int, tuple[CatalogChange, str]], errors: Errors
) -> None:
    """An alias must not be another entry's alias or the name another entry is served under."""
    final_alias = {row.entry_id: row.alias for row in rows}
    for entry_id, (_, alias) in new_aliases.items():
        final_alias[entry_id] = alias
    by_id = {row.entry_id: row for row in rows}
    for entry_id, (change, alias) in new_aliases.items():
        if not alias:
            continue
        row = by_id[entry_id]
        for other in rows:
            if other.entry_id == entry_id or other.group != row.group:
                continue
            other_alias = final_alias[other.entry_id]
            if other_alias == alias or (not other_alias and other.public_name == alias):
                word = _KIND_WORD[CatalogKind(other.kind)]
                _add(
                    errors,
                    change.field("alias"),
                    f"{alias!r} is already the name of the {word} {other.key!r} "
                    f"of {other.connection_name}.",
                )
                break


def endpoint_catalog_update(
    *,
    endpoint: Endpoint,
    changes: Sequence[CatalogChange],
    skip_held: bool = False,
    actor: Any = None,
) -> CatalogUpdate:
    """Apply toggles, aliases and description overrides, all or nothing.

    ``enabled: True`` approves the entry's current definition (for an entry held
    as "changed upstream" that is the review's acceptance); a missing entry
    cannot be enabled. With ``skip_held`` (the UI's "enable all shown"),
    entries held for review or missing are left alone and reported in
    ``skipped`` rather than refused, so a bulk action never approves a change
    nobody looked at. Raises ``ValidationError`` with keys such as
    ``tools[2].alias``. Publishes ``endpoint.changed`` for the lists it changed.
    """
    if len(changes) > CHANGES_MAX:
        raise ValidationError({"nonField": [f"Send at most {CHANGES_MAX} changes at once."]})
    for attempt in range(2):
        try:
            with transaction.atomic():
                result = _catalog_update(endpoint, changes, skip_held=skip_held)
                if result.changed:
                    _entries_changed_record(endpoint, changes, actor)
                return result
        except IntegrityError:
            # Another request created the same toggle row first: read again and reapply.
            if attempt == 1:
                raise
    raise AssertionError("unreachable")


def _entries_changed_record(
    endpoint: Endpoint, changes: Sequence[CatalogChange], actor: Any
) -> None:
    """The activity log's record of toggles, aliases and description overrides."""
    listed = []
    for change in changes[:100]:
        item: dict[str, Any] = {
            "connectionId": str(change.connection_id),
            "kind": str(change.kind),
            "key": str(change.key),
        }
        for name in ("enabled", "alias", "description"):
            value = getattr(change, name)
            if value is not UNSET:
                item[name] = value if name != "description" else value is not None
        listed.append(item)
    management_event_record(
        organization_id=endpoint.organization_id,
        action="endpoint.entries_changed",
        target_type="endpoint",
        target_id=endpoint.pk,
        target_name=endpoint.name,
        actor=actor,
        details={"changes": listed, "count": len(changes)},
    )


def _catalog_update(
    endpoint: Endpoint, changes: Sequence[CatalogChange], *, skip_held: bool
) -> CatalogUpdate:
    rows = endpoint_catalog_rows(endpoint=endpoint)
    by_identity = {(str(row.connection_id), row.kind, row.key): row for row in rows}
    connected = {str(row.connection_id) for row in rows} | {
        str(key)
        for key in EndpointConnection.objects.filter(endpoint=endpoint).values_list(
            "connection_id", flat=True
        )
    }
    errors: Errors = {}
    result = CatalogUpdate()
    seen: dict[int, str] = {}
    planned: list[tuple[CatalogChange, CatalogRow, Any, Any, Any]] = []
    new_aliases: dict[int, tuple[CatalogChange, str]] = {}
    for change in changes:
        try:
            connection_key = str(uuid.UUID(str(change.connection_id)))
        except ValueError:
            connection_key = ""
        if connection_key not in connected:
            _add(
                errors,
                change.field("connectionId"),
                "No connection with this id is connected to the endpoint.",
            )
            continue
        key_field = _KEY_FIELD[CatalogKind(change.kind)]
        row = by_identity.get((connection_key, change.kind, str(change.key)))
        if row is None:
            word = _KIND_WORD[CatalogKind(change.kind)]
            _add(
                errors,
                change.field(key_field),
                f"The server has no {word} {str(change.key)[:200]!r} in its catalog.",
            )
            continue
        if row.entry_id in seen:
            _add(errors, change.field(key_field), f"Listed twice (also at {seen[row.entry_id]}).")
            continue
        seen[row.entry_id] = change.label or change.field(key_field)
        enabled = change.enabled
        if enabled is not UNSET and not isinstance(enabled, bool):
            _add(errors, change.field("enabled"), "Give true or false.")
            continue
        if enabled is True and row.state == "missing":
            if skip_held:
                result.skipped.append(row)
                enabled = UNSET
            else:
                _add(
                    errors,
                    change.field("enabled"),
                    f"{row.key!r} is missing upstream and cannot be enabled.",
                )
                continue
        if enabled is True and row.state == "changed" and skip_held:
            result.skipped.append(row)
            enabled = UNSET
        alias = _clean_alias(change, row, errors)
        override = _clean_override(change, errors)
        if isinstance(alias, str):
            new_aliases[row.entry_id] = (change, alias)
        planned.append((change, row, enabled, alias, override))
    _check_aliases(rows, new_aliases, errors)
    if errors:
        raise ValidationError(errors)

    entry_ids = [row.entry_id for _, row, _, _, _ in planned]
    existing = {
        toggle.entry_id: toggle
        for toggle in EndpointToggle.objects.filter(endpoint=endpoint, entry_id__in=entry_ids)
    }
    enabling = [row.entry_id for _, row, enabled, _, _ in planned if enabled is True]
    approved = {
        pk: (digest, definition)
        for pk, digest, definition in CatalogEntry.objects.filter(pk__in=enabling).values_list(
            "pk", "definition_hash", "definition"
        )
    }
    to_create: list[EndpointToggle] = []
    to_update: list[EndpointToggle] = []
    for _, row, enabled, alias, override in planned:
        toggle = existing.get(row.entry_id)
        is_new = toggle is None
        if toggle is None:
            toggle = EndpointToggle(endpoint=endpoint, entry_id=row.entry_id)
        before = (
            toggle.enabled,
            toggle.alias,
            toggle.description,
            toggle.acknowledged_hash,
        )
        if enabled is True and row.entry_id in approved:
            toggle.enabled = True
            toggle.acknowledged_hash, toggle.acknowledged_definition = approved[row.entry_id]
        elif enabled is False:
            toggle.enabled = False
        if isinstance(alias, str):
            toggle.alias = alias
        if not isinstance(override, _Unset):
            toggle.description = override
        after = (toggle.enabled, toggle.alias, toggle.description, toggle.acknowledged_hash)
        if after == before:
            continue
        result.changed += 1
        result.groups.add(row.group)
        (to_create if is_new else to_update).append(toggle)
    EndpointToggle.objects.bulk_create(to_create)
    EndpointToggle.objects.bulk_update(
        to_update,
        ["enabled", "alias", "description", "acknowledged_hash", "acknowledged_definition"],
    )
    if result.groups:
        # The kind groups are named like the lists they change.
        kinds = cast(list[ChangeKind], sorted(result.groups))
        endpoint_changed_on_commit(endpoint_id=endpoint.pk, kinds=kinds)
    return result


def _changes_for_entries(
    endpoint: Endpoint, entry_ids: Iterable[Any], **fields: Any
) -> list[CatalogChange]:
    """Changes naming entries by catalog entry id (the UI's forms post ids)."""
    rows = {row.entry_id: row for row in endpoint_catalog_rows(endpoint=endpoint)}
    changes: list[CatalogChange] = []
    for raw in entry_ids:
        try:
            row = rows.get(int(raw))
        except (TypeError, ValueError):
            row = None
        if row is None:
            raise ValidationError({"nonField": ["This entry is not part of the endpoint."]})
        changes.append(
            CatalogChange(connection_id=row.connection_id, kind=row.kind, key=row.key, **fields)
        )
    return changes


def endpoint_entries_set_enabled(
    *, endpoint: Endpoint, entry_ids: Iterable[Any], enabled: bool, actor: Any = None
) -> CatalogUpdate:
    """Switch entries on or off by id (the UI's toggle and "enable/disable all shown").

    Enabling skips entries held for review or missing (see ``skip_held``).
    """
    changes = _changes_for_entries(endpoint, entry_ids, enabled=enabled)
    return endpoint_catalog_update(endpoint=endpoint, changes=changes, skip_held=True, actor=actor)


def endpoint_entry_accept(*, endpoint: Endpoint, entry_id: Any, actor: Any = None) -> CatalogUpdate:
    """Approve an entry's current upstream definition and serve it (the review's button)."""
    changes = _changes_for_entries(endpoint, [entry_id], enabled=True)
    return endpoint_catalog_update(endpoint=endpoint, changes=changes, actor=actor)


def endpoint_entry_edit(
    *,
    endpoint: Endpoint,
    entry_id: Any,
    alias: Any = UNSET,
    description: Any = UNSET,
    actor: Any = None,
) -> CatalogUpdate:
    """Set an entry's alias and description override (blank restores the upstream's)."""
    changes = _changes_for_entries(endpoint, [entry_id], alias=alias, description=description)
    return endpoint_catalog_update(endpoint=endpoint, changes=changes, actor=actor)


def _clean_max_access(value: Any, errors: Errors) -> int:
    """A choice of ``AccessDuration`` (seconds); existing grants keep their expiry."""
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        seconds = -1
    if seconds not in AccessDuration.values:
        choices = ", ".join(f"{v} ({label})" for v, label in AccessDuration.choices)
        errors["maxAccessDuration"] = [f"Choose one of: {choices}."]
        return AccessDuration.QUARTER
    return seconds


def endpoint_session_revoke(*, endpoint: Endpoint, membership: Membership, session_id: Any) -> bool:
    """Revoke one of the endpoint's sessions (the page's button and the API's DELETE).

    An OAuth authorization ends with all its tokens, an API token is revoked
    (it acted in the whole organisation); either way the client's open MCP
    streams close on every instance. Admins may revoke anyone's, others only
    their own. False when no such session is visible to ``membership``.
    """
    from oauth.services import api_token_revoke, oauth_authorization_revoke

    for row in endpoint_sessions(endpoint=endpoint, membership=membership):
        if str(row.id) != str(session_id):
            continue
        if row.kind == "oauth":
            oauth_authorization_revoke(
                authorization=OAuthAuthorization.objects.select_related("endpoint", "user").get(
                    pk=row.id
                ),
                actor=membership.user,
            )
        else:
            api_token_revoke(token=ApiToken.objects.get(pk=row.id), actor=membership.user)
        return True
    return False
