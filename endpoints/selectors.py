"""Reads of endpoints: the admin's view of their toggles, and the served view the
transport asks for. Admin reads are scoped by organisation; the transport finds an
endpoint by its globally unique slug."""

from __future__ import annotations

import uuid
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings
from django.db.models import Count, F, FilteredRelation, Prefetch, Q, QuerySet

from connections.models import CatalogEntry, CatalogKind, CatalogState, Connection
from endpoints import naming
from endpoints.models import Endpoint, EndpointAccess, EndpointConnection, EndpointToggle
from oauth.models import Membership, Organization, Role

RowState = Literal["ok", "missing", "changed"]


def _uuid(value: str | uuid.UUID) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


# --- endpoints ----------------------------------------------------------------------


def _with_lists(queryset: QuerySet[Endpoint]) -> QuerySet[Endpoint]:
    """Prefetch the connection links (by connection name) and chosen members."""
    return queryset.prefetch_related(
        Prefetch(
            "links",
            queryset=EndpointConnection.objects.select_related("connection").order_by(
                "connection__name", "connection_id"
            ),
        ),
        Prefetch("members", queryset=Membership.objects.select_related("user")),
    )


def endpoint_list(*, organization: Organization) -> QuerySet[Endpoint]:
    """The organisation's endpoints by name, with their connection links and members.

    ``served_tool_count`` counts the tools each one serves now (enabled, present
    upstream, definition unchanged since it was enabled).
    """
    served = Q(
        toggles__enabled=True,
        toggles__entry__kind=CatalogKind.TOOL,
        toggles__acknowledged_hash=F("toggles__entry__definition_hash"),
    ) & ~Q(toggles__entry__state=CatalogState.MISSING)
    return _with_lists(
        Endpoint.objects.filter(organization=organization)
        .annotate(served_tool_count=Count("toggles", filter=served))
        .order_by("name")
    )


def endpoint_get(*, organization: Organization, endpoint_id: str | uuid.UUID) -> Endpoint | None:
    """One endpoint of the organisation, or None.

    A malformed, missing or other organisation's id all give None, so callers
    answer the same 404 and ids leak nothing across tenants.
    """
    key = _uuid(endpoint_id)
    if key is None:
        return None
    return _with_lists(Endpoint.objects.filter(organization=organization, pk=key)).first()


def endpoint_get_by_slug(*, slug: str) -> Endpoint | None:
    """The endpoint served at ``/mcp/<slug>`` (slugs are unique across organisations)."""
    return Endpoint.objects.filter(slug=slug).select_related("organization").first()


def endpoint_connections(*, endpoint: Endpoint) -> list[Connection]:
    """The connections the endpoint federates, by name."""
    return list(Connection.objects.filter(endpoint_links__endpoint=endpoint).order_by("name", "pk"))


def endpoint_connection_ids(*, endpoint: Endpoint) -> list[uuid.UUID]:
    """Ids of the connections the endpoint federates, by connection name."""
    return list(
        EndpointConnection.objects.filter(endpoint=endpoint)
        .order_by("connection__name", "connection_id")
        .values_list("connection_id", flat=True)
    )


def endpoint_member_ids(*, endpoint: Endpoint) -> list[int]:
    """User ids of the members chosen to use the endpoint (from the prefetch when there is one)."""
    return sorted(m.user_id for m in endpoint.members.all())


def endpoint_member_may_use(*, endpoint: Endpoint, membership: Membership | None) -> bool:
    """Whether this member of the organisation may use the endpoint.

    Admins always may; with ``organization`` access every admin and member may;
    with ``members`` access only the chosen ones. Auditors read logs and do not
    use endpoints unless chosen.
    """
    if membership is None or membership.organization_id != endpoint.organization_id:
        return False
    if membership.role == Role.ADMIN:
        return True
    if endpoint.access == EndpointAccess.ORGANIZATION and membership.role == Role.MEMBER:
        return True
    return endpoint.members.filter(pk=membership.pk).exists()


def endpoint_candidate_members(*, organization: Organization) -> QuerySet[Membership]:
    """The organisation's memberships, as choices for an endpoint's access list."""
    return (
        Membership.objects.filter(organization=organization)
        .select_related("user")
        .order_by("user__username")
    )


# --- catalog rows -------------------------------------------------------------------

# Tools and prompts live in separate name spaces; resources and templates share one.
KIND_GROUPS: dict[str, tuple[str, ...]] = {
    "tools": (CatalogKind.TOOL,),
    "prompts": (CatalogKind.PROMPT,),
    "resources": (CatalogKind.RESOURCE, CatalogKind.RESOURCE_TEMPLATE),
}
KIND_TO_GROUP = {kind: group for group, kinds in KIND_GROUPS.items() for kind in kinds}


@dataclass
class CatalogRow:
    """One tool, resource, template or prompt of a connected server, as this endpoint has it.

    ``public_name`` is the name (tools, prompts) or URI (resources, templates)
    clients see; ``enabled`` is whether it is served right now; ``enabled_intent``
    is what the admin chose (a changed or missing entry is held back despite it).
    """

    entry_id: int
    connection_id: uuid.UUID
    connection_name: str
    connection_slug: str
    kind: str
    key: str
    upstream_name: str
    title: str
    upstream_description: str
    description_override: str | None
    alias: str
    enabled_intent: bool
    state: RowState
    definition_hash: str
    acknowledged_hash: str
    public_name: str = ""

    @property
    def enabled(self) -> bool:
        return self.enabled_intent and self.state == "ok"

    @property
    def description(self) -> str:
        return (
            self.description_override
            if self.description_override is not None
            else self.upstream_description
        )

    @property
    def group(self) -> str:
        return KIND_TO_GROUP[self.kind]

    @property
    def alias_or_none(self) -> str | None:
        return self.alias or None

    @property
    def kind_label(self) -> str:
        return str(CatalogKind(self.kind).label)


def _row_state(*, entry_state: str, intent: bool, definition_hash: str, acked: str) -> RowState:
    if entry_state == CatalogState.MISSING:
        return "missing"
    # Judged per endpoint against what its admin approved, not by the catalog's
    # own "changed" flag: each endpoint reviews a change for itself.
    if intent and acked != definition_hash:
        return "changed"
    return "ok"


def _rows(endpoint: Endpoint, *, include_missing: bool) -> list[CatalogRow]:
    """All catalog entries of the endpoint's connections with this endpoint's toggles: one query."""
    queryset = (
        CatalogEntry.objects.filter(connection__endpoint_links__endpoint=endpoint)
        .annotate(
            toggle=FilteredRelation(
                "endpoint_toggles", condition=Q(endpoint_toggles__endpoint=endpoint)
            )
        )
        .order_by("connection__name", "connection_id", "kind", "position", "key")
        .values_list(
            "pk",
            "connection_id",
            "connection__name",
            "connection__slug",
            "kind",
            "key",
            "name",
            "title",
            "description",
            "definition_hash",
            "state",
            "toggle__enabled",
            "toggle__alias",
            "toggle__description",
            "toggle__acknowledged_hash",
        )
    )
    if not include_missing:
        queryset = queryset.exclude(state=CatalogState.MISSING)
    rows: list[CatalogRow] = []
    for (
        pk,
        connection_id,
        connection_name,
        connection_slug,
        kind,
        key,
        name,
        title,
        description,
        definition_hash,
        state,
        enabled,
        alias,
        override,
        acked,
    ) in queryset:
        intent = bool(enabled)
        rows.append(
            CatalogRow(
                entry_id=pk,
                connection_id=connection_id,
                connection_name=connection_name,
                connection_slug=connection_slug,
                kind=kind,
                key=key,
                upstream_name=name or key,
                title=title,
                upstream_description=description,
                description_override=override,
                alias=alias or "",
                enabled_intent=intent,
                state=_row_state(
                    entry_state=state,
                    intent=intent,
                    definition_hash=definition_hash,
                    acked=acked or "",
                ),
                definition_hash=definition_hash,
                acknowledged_hash=acked or "",
            )
        )
    _name_rows(rows, prefix=endpoint.prefix_names)
    return rows


def _bare_resource_connection(rows: Iterable[CatalogRow], *, prefix: bool) -> uuid.UUID | None:
    """The one connection whose resource URIs are served unchanged, if any.

    With prefixing off and a single connected server offering resources, no URI
    can collide, so its URIs stay as the server wrote them; otherwise every
    resource URI carries the gateway prefix naming its server.
    """
    if prefix:
        return None
    owners = {
        row.connection_id for row in rows if row.group == "resources" and row.state != "missing"
    }
    return next(iter(owners)) if len(owners) == 1 else None


def _name_rows(rows: list[CatalogRow], *, prefix: bool) -> None:
    """Set ``public_name`` on every row (names of missing rows as they were, unchecked)."""
    for group in ("tools", "prompts"):
        present = [row for row in rows if row.group == group and row.state != "missing"]
        names = _assign_names(present, prefix=prefix)
        for row in rows:
            if row.group != group:
                continue
            if row.state == "missing":
                row.public_name = row.alias or naming.prefixed_name(
                    row.connection_slug, row.upstream_name
                )
            else:
                row.public_name = names[row.entry_id]
    bare = _bare_resource_connection(rows, prefix=prefix)
    for row in rows:
        if row.group == "resources":
            row.public_name = (
                row.key
                if row.connection_id == bare
                else naming.public_resource_uri(row.connection_slug, row.key)
            )


def _assign_names(rows: Iterable[CatalogRow], *, prefix: bool) -> dict[Hashable, str]:
    """Public names of tool or prompt rows, keyed by entry id (see ``naming``)."""
    return naming.assign_public_names(
        (
            naming.NameCandidate(
                ident=row.entry_id,
                connection_slug=row.connection_slug,
                upstream_name=row.key,
                alias=row.alias,
            )
            for row in rows
        ),
        prefix=prefix,
    )


def endpoint_catalog_rows(*, endpoint: Endpoint, group: str | None = None) -> list[CatalogRow]:
    """Every entry of the endpoint's connections with its toggle, public name and state.

    Missing entries are included (shown as missing, never served). Ordered by
    connection name, kind and the server's order. ``group`` narrows to
    ``tools``, ``prompts`` or ``resources`` (resources and templates).
    """
    rows = _rows(endpoint, include_missing=True)
    if group is not None:
        rows = [row for row in rows if row.group == group]
    return rows


def endpoint_catalog_row(*, endpoint: Endpoint, entry_id: str | int) -> CatalogRow | None:
    """One row of the endpoint's catalog by catalog entry id, or None (also for a bad id)."""
    try:
        key = int(entry_id)
    except (TypeError, ValueError):
        return None
    return next((row for row in _rows(endpoint, include_missing=True) if row.entry_id == key), None)


def catalog_entry_for_endpoint(*, endpoint: Endpoint, entry_id: int) -> CatalogEntry | None:
    """A catalog entry of one of the endpoint's connections (with its definitions), or None."""
    return CatalogEntry.objects.filter(
        pk=entry_id, connection__endpoint_links__endpoint=endpoint
    ).first()


def endpoint_approved_definition(*, endpoint: Endpoint, entry: CatalogEntry) -> Any:
    """The definition an admin of this endpoint last approved for the entry, or None."""
    return (
        EndpointToggle.objects.filter(endpoint=endpoint, entry=entry)
        .values_list("acknowledged_definition", flat=True)
        .first()
    )


@dataclass(frozen=True)
class GroupCounts:
    """How many entries of a kind group a connection (or the endpoint) has and serves."""

    total: int = 0
    enabled: int = 0
    changed: int = 0
    missing: int = 0


def catalog_counts(rows: Iterable[CatalogRow]) -> GroupCounts:
    """Counts over rows: all, served, held for review, missing."""
    total = enabled = changed = missing = 0
    for row in rows:
        total += 1
        enabled += row.enabled
        changed += row.state == "changed"
        missing += row.state == "missing"
    return GroupCounts(total=total, enabled=enabled, changed=changed, missing=missing)


# --- the served view (for the transport) --------------------------------------------


@dataclass(frozen=True)
class ServedTool:
    """A tool as an endpoint serves it: public name, and where calls go."""

    name: str
    description: str
    definition: dict[str, Any]
    connection_id: uuid.UUID
    upstream_name: str


@dataclass(frozen=True)
class ServedPrompt:
    """A prompt as an endpoint serves it."""

    name: str
    description: str
    definition: dict[str, Any]
    connection_id: uuid.UUID
    upstream_name: str


@dataclass(frozen=True)
class ServedResource:
    """A static resource as an endpoint serves it: public URI, and the upstream one."""

    uri: str
    name: str
    description: str
    definition: dict[str, Any]
    connection_id: uuid.UUID
    upstream_uri: str


@dataclass(frozen=True)
class ServedResourceTemplate:
    """A resource template as an endpoint serves it."""

    uri_template: str
    name: str
    description: str
    definition: dict[str, Any]
    connection_id: uuid.UUID
    upstream_uri_template: str


@dataclass(frozen=True)
class ResourceRoute:
    """Where a ``resources/read`` of a public URI goes."""

    connection_id: uuid.UUID
    upstream_uri: str


@dataclass(frozen=True)
class EndpointServed:
    """Everything an endpoint serves right now, with reverse lookups for routing.

    Immutable, so the transport can cache it per endpoint and drop it when an
    ``endpoint.changed`` event arrives.
    """

    endpoint_id: uuid.UUID
    tools: tuple[ServedTool, ...] = ()
    resources: tuple[ServedResource, ...] = ()
    resource_templates: tuple[ServedResourceTemplate, ...] = ()
    prompts: tuple[ServedPrompt, ...] = ()
    # slug of each connection that has served resources, for splitting public URIs
    resource_connections: dict[str, uuid.UUID] = field(default_factory=dict)
    bare_resource_connection: uuid.UUID | None = None
    _tools: dict[str, ServedTool] = field(default_factory=dict, repr=False)
    _prompts: dict[str, ServedPrompt] = field(default_factory=dict, repr=False)
    _resources: dict[tuple[uuid.UUID, str], ServedResource] = field(
        default_factory=dict, repr=False
    )
    _templates: dict[str, ServedResourceTemplate] = field(default_factory=dict, repr=False)

    def tool(self, name: str) -> ServedTool | None:
        """The served tool with this public name, or None (disabled, missing, unknown)."""
        return self._tools.get(name)

    def prompt(self, name: str) -> ServedPrompt | None:
        """The served prompt with this public name, or None."""
        return self._prompts.get(name)

    def resource_template(self, uri_template: str) -> ServedResourceTemplate | None:
        """The served template with this public URI template (for ``completion/complete``)."""
        return self._templates.get(uri_template)

    def resource_route(self, uri: str) -> ResourceRoute | None:
        """Where a read of this public URI goes, or None when no enabled resource covers it.

        The URI must be an enabled static resource of the server it names, or
        match one of that server's enabled templates.
        """
        if self.bare_resource_connection is not None:
            connection_id: uuid.UUID | None = self.bare_resource_connection
            upstream = uri
        else:
            parts = naming.split_public_resource_uri(uri)
            if parts is None:
                return None
            connection_id = self.resource_connections.get(parts[0])
            upstream = parts[1]
        if connection_id is None:
            return None
        if (connection_id, upstream) in self._resources:
            return ResourceRoute(connection_id=connection_id, upstream_uri=upstream)
        for template in self.resource_templates:
            if template.connection_id == connection_id and naming.template_pattern(
                template.upstream_uri_template
            ).fullmatch(upstream):
                return ResourceRoute(connection_id=connection_id, upstream_uri=upstream)
        return None


def _served_definition(
    definition: dict[str, Any], *, key_field: str, public: str, override: str | None
) -> dict[str, Any]:
    served = dict(definition)
    served[key_field] = public
    if override is not None:
        served["description"] = override
    return served


def endpoint_served(*, endpoint: Endpoint) -> EndpointServed:
    """What the endpoint serves: enabled, present, unchanged entries under public names.

    Two queries: the endpoint's catalog rows with its toggles, then the
    definitions of the served ones.
    """
    rows = _rows(endpoint, include_missing=False)
    served_rows = [row for row in rows if row.enabled]
    definitions: dict[int, dict[str, Any]] = dict(
        CatalogEntry.objects.filter(pk__in=[row.entry_id for row in served_rows]).values_list(
            "pk", "definition"
        )
    )
    tools: list[ServedTool] = []
    prompts: list[ServedPrompt] = []
    resources: list[ServedResource] = []
    templates: list[ServedResourceTemplate] = []
    resource_connections: dict[str, uuid.UUID] = {}
    for row in served_rows:
        definition = definitions.get(row.entry_id)
        if not isinstance(definition, dict):
            continue
        if row.kind == CatalogKind.TOOL:
            tools.append(
                ServedTool(
                    name=row.public_name,
                    description=row.description,
                    definition=_served_definition(
                        definition,
                        key_field="name",
                        public=row.public_name,
                        override=row.description_override,
                    ),
                    connection_id=row.connection_id,
                    upstream_name=row.key,
                )
            )
        elif row.kind == CatalogKind.PROMPT:
            prompts.append(
                ServedPrompt(
                    name=row.public_name,
                    description=row.description,
                    definition=_served_definition(
                        definition,
                        key_field="name",
                        public=row.public_name,
                        override=row.description_override,
                    ),
                    connection_id=row.connection_id,
                    upstream_name=row.key,
                )
            )
        else:
            resource_connections[row.connection_slug] = row.connection_id
            if row.kind == CatalogKind.RESOURCE:
                resources.append(
                    ServedResource(
                        uri=row.public_name,
                        name=row.upstream_name,
                        description=row.description,
                        definition=_served_definition(
                            definition,
                            key_field="uri",
                            public=row.public_name,
                            override=row.description_override,
                        ),
                        connection_id=row.connection_id,
                        upstream_uri=row.key,
                    )
                )
            else:
                templates.append(
                    ServedResourceTemplate(
                        uri_template=row.public_name,
                        name=row.upstream_name,
                        description=row.description,
                        definition=_served_definition(
                            definition,
                            key_field="uriTemplate",
                            public=row.public_name,
                            override=row.description_override,
                        ),
                        connection_id=row.connection_id,
                        upstream_uri_template=row.key,
                    )
                )
    return EndpointServed(
        endpoint_id=endpoint.pk,
        tools=tuple(tools),
        resources=tuple(resources),
        resource_templates=tuple(templates),
        prompts=tuple(prompts),
        resource_connections=resource_connections,
        bare_resource_connection=_bare_resource_connection(rows, prefix=endpoint.prefix_names),
        _tools={tool.name: tool for tool in tools},
        _prompts={prompt.name: prompt for prompt in prompts},
        _resources={(r.connection_id, r.upstream_uri): r for r in resources},
        _templates={t.uri_template: t for t in templates},
    )


def endpoint_served_tools(*, endpoint: Endpoint) -> list[ServedTool]:
    """The tools the endpoint serves (see ``endpoint_served`` for everything at once)."""
    return list(endpoint_served(endpoint=endpoint).tools)


def endpoint_served_prompts(*, endpoint: Endpoint) -> list[ServedPrompt]:
    """The prompts the endpoint serves."""
    return list(endpoint_served(endpoint=endpoint).prompts)


def endpoint_served_resources(*, endpoint: Endpoint) -> list[ServedResource]:
    """The static resources the endpoint serves."""
    return list(endpoint_served(endpoint=endpoint).resources)


def endpoint_served_resource_templates(*, endpoint: Endpoint) -> list[ServedResourceTemplate]:
    """The resource templates the endpoint serves."""
    return list(endpoint_served(endpoint=endpoint).resource_templates)


def endpoint_ids_for_connection(*, connection_id: uuid.UUID | str) -> list[uuid.UUID]:
    """Ids of the endpoints that federate a connection (to tell them its catalog changed)."""
    return list(
        EndpointConnection.objects.filter(connection_id=connection_id).values_list(
            "endpoint_id", flat=True
        )
    )


def endpoint_for_resource(*, resource: str) -> Endpoint | None:
    """The endpoint whose URL is exactly ``resource`` (an OAuth resource indicator).

    Both forms of an endpoint's URL count: ``<GATEWAY_PUBLIC_URL>/mcp/<slug>`` and,
    with ``GATEWAY_ENDPOINT_DOMAIN``, ``https://<slug>.<domain>/mcp``. Anything else,
    a trailing slash included, names no endpoint.
    """
    prefix = f"{settings.GATEWAY_PUBLIC_URL}/mcp/"
    slug = ""
    if resource.startswith(prefix):
        slug = resource[len(prefix) :]
    elif settings.GATEWAY_ENDPOINT_DOMAIN:
        suffix = f".{settings.GATEWAY_ENDPOINT_DOMAIN}/mcp"
        if resource.startswith("https://") and resource.endswith(suffix):
            slug = resource[len("https://") : -len(suffix)]
    if not slug or "/" in slug or "." in slug:
        return None
    endpoint = Endpoint.objects.select_related("organization").filter(slug=slug).first()
    if endpoint is None or resource not in (endpoint.url, endpoint.domain_url):
        return None
    return endpoint


@dataclass(frozen=True)
class SessionRow:
    """An authorized session on an endpoint: an OAuth client, or an API token that may use it."""

    id: uuid.UUID
    kind: Literal["oauth", "api_token"]
    client_name: str
    user_id: int
    username: str
    granted_at: Any
    expires_at: Any
    last_used_at: Any
    calls: int


def endpoint_sessions(*, endpoint: Endpoint, membership: Membership) -> list[SessionRow]:
    """Who can call the endpoint right now: live OAuth authorizations, then API tokens.

    Admins see everyone's; others only their own. API tokens act in the whole
    organisation, so they are listed for users who may use this endpoint.
    """
    from django.utils import timezone

    from oauth.models import ApiToken, OAuthAuthorization

    own_only = not membership.is_admin
    authorizations = OAuthAuthorization.objects.filter(
        endpoint=endpoint, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).select_related("user")
    tokens = ApiToken.objects.filter(
        organization_id=endpoint.organization_id, revoked_at__isnull=True, user__is_active=True
    ).select_related("user")
    if own_only:
        authorizations = authorizations.filter(user_id=membership.user_id)
        tokens = tokens.filter(user_id=membership.user_id)
    allowed = set(endpoint_user_ids_allowed(endpoint=endpoint))
    rows = [
        SessionRow(
            id=a.pk,
            kind="oauth",
            client_name=a.client_name or "OAuth client",
            user_id=a.user_id,
            username=a.user.get_username(),
            granted_at=a.granted_at,
            expires_at=a.expires_at,
            last_used_at=a.last_used_at,
            calls=a.call_count,
        )
        for a in authorizations.order_by("-granted_at")
    ]
    rows += [
        SessionRow(
            id=t.pk,
            kind="api_token",
            client_name=t.name,
            user_id=t.user_id,
            username=t.user.get_username(),
            granted_at=t.created_at,
            expires_at=None,
            last_used_at=t.last_used_at,
            calls=t.call_count,
        )
        for t in tokens.order_by("-created_at")
        if t.user_id in allowed
    ]
    return rows


def endpoint_user_ids_allowed(*, endpoint: Endpoint) -> list[int]:
    """The ids of the users who may use the endpoint now (see ``endpoint_member_may_use``)."""
    memberships = Membership.objects.filter(organization_id=endpoint.organization_id)
    return [
        m.user_id for m in memberships if endpoint_member_may_use(endpoint=endpoint, membership=m)
    ]
