"""Admin UI pages: the dashboard, and endpoints with their tool toggles."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from connections.models import Connection, ConnectionStatus
from connections.selectors import connection_list
from endpoints import selectors, services
from endpoints.client_setup import endpoint_client_setups
from endpoints.forms import EndpointForm, EntryForm
from endpoints.models import Endpoint
from endpoints.selectors import CatalogRow
from oauth.decorators import membership_required
from oauth.models import Organization


@membership_required()
def dashboard_view(request: HttpRequest) -> HttpResponse:
    connections = connection_list(
        organization=request.membership.organization  # type: ignore[attr-defined]
    )
    counts = connections.aggregate(
        total=Count("pk"),
        active=Count("pk", filter=Q(status=ConnectionStatus.ACTIVE)),
        error=Count("pk", filter=Q(status=ConnectionStatus.ERROR)),
        unknown=Count("pk", filter=Q(status=ConnectionStatus.UNKNOWN)),
    )
    return render(
        request,
        "dashboard.html",
        {"counts": counts, "recent": connections.order_by("-updated_at")[:5]},
    )


# --- endpoints ------------------------------------------------------------------------


def _organization(request: HttpRequest) -> Organization:
    organization: Organization = request.membership.organization  # type: ignore[attr-defined]
    return organization


def _endpoint_or_404(request: HttpRequest, endpoint_id: str) -> Endpoint:
    endpoint = selectors.endpoint_get(organization=_organization(request), endpoint_id=endpoint_id)
    if endpoint is None:
        raise Http404("MCP endpoint not found")
    return endpoint


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


@membership_required()
def endpoint_list_view(request: HttpRequest) -> HttpResponse:
    endpoints = selectors.endpoint_list(organization=_organization(request))
    return render(request, "endpoints/list.html", {"endpoints": endpoints})


def _endpoint_form(request: HttpRequest, endpoint: Endpoint | None = None) -> EndpointForm:
    organization = _organization(request)
    return EndpointForm(
        request.POST or None,
        connections=list(connection_list(organization=organization)),
        memberships=list(selectors.endpoint_candidate_members(organization=organization)),
        endpoint=endpoint,
    )


@membership_required(admin=True)
@require_http_methods(["GET", "POST"])
def endpoint_create_view(request: HttpRequest) -> HttpResponse:
    form = _endpoint_form(request)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint = services.endpoint_create(
                organization=_organization(request), actor=request.user, **form.service_arguments()
            )
        except ValidationError as error:
            form.add_service_errors(error)
        else:
            messages.success(request, f"Endpoint “{endpoint.name}” created.")
            return redirect("endpoint-detail", endpoint_id=endpoint.pk)
    return render(request, "endpoints/form.html", {"form": form, "endpoint": None})


@membership_required(admin=True)
@require_http_methods(["GET", "POST"])
def endpoint_edit_view(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint_or_404(request, endpoint_id)
    form = _endpoint_form(request, endpoint)
    if request.method == "POST" and form.is_valid():
        try:
            services.endpoint_update(
                endpoint=endpoint, actor=request.user, **form.service_arguments()
            )
        except ValidationError as error:
            form.add_service_errors(error)
            endpoint.refresh_from_db()
        else:
            messages.success(request, f"Endpoint “{endpoint.name}” saved.")
            return redirect("endpoint-detail", endpoint_id=endpoint.pk)
    return render(request, "endpoints/form.html", {"form": form, "endpoint": endpoint})


@membership_required(admin=True)
@require_http_methods(["GET", "POST"])
def endpoint_delete_view(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint_or_404(request, endpoint_id)
    if request.method == "POST":
        name = endpoint.name
        services.endpoint_delete(endpoint=endpoint, actor=request.user)
        messages.success(request, f"Endpoint “{name}” deleted.")
        return redirect("endpoint-list")
    return render(request, "endpoints/delete.html", {"endpoint": endpoint})


@dataclass
class _Section:
    """One connected server on the endpoint page: its rows by kind group, shown and counted."""

    connection: Connection
    groups: dict[str, list[CatalogRow]] = field(default_factory=dict)
    counts: dict[str, selectors.GroupCounts] = field(default_factory=dict)

    @property
    def shown(self) -> int:
        return sum(len(rows) for rows in self.groups.values())


GROUP_TITLES = {"tools": "Tools", "prompts": "Prompts", "resources": "Resources"}


def _matches(row: CatalogRow, query: str) -> bool:
    needle = query.casefold()
    return any(
        needle in text.casefold() for text in (row.public_name, row.key, row.title, row.description)
    )


def _catalog_context(endpoint: Endpoint, query: str) -> dict[str, Any]:
    """Sections per connected server, filtered by ``query``, with counts over all rows."""
    rows = selectors.endpoint_catalog_rows(endpoint=endpoint)
    sections = {
        c.pk: _Section(connection=c, groups={g: [] for g in GROUP_TITLES})
        for c in selectors.endpoint_connections(endpoint=endpoint)
    }
    for row in rows:
        section = sections.get(row.connection_id)
        if section is not None and (not query or _matches(row, query)):
            section.groups[row.group].append(row)
    for section in sections.values():
        for group in GROUP_TITLES:
            section.counts[group] = selectors.catalog_counts(
                r for r in rows if r.connection_id == section.connection.pk and r.group == group
            )
    shown = [
        row for section in sections.values() for rows_ in section.groups.values() for row in rows_
    ]
    switchable = [row for row in shown if row.state == "ok"]
    return {
        "endpoint": endpoint,
        "sections": list(sections.values()),
        "query": query,
        "shown_ids": [row.entry_id for row in shown],
        # The bulk buttons are disabled when they would change nothing.
        "shown_all_enabled": all(row.enabled for row in switchable),
        "shown_none_enabled": not any(row.enabled for row in switchable),
        "totals": {
            group: selectors.catalog_counts(r for r in rows if r.group == group)
            for group in GROUP_TITLES
        },
        "group_titles": GROUP_TITLES,
    }


def _query(request: HttpRequest) -> str:
    raw = request.POST.get("q") if request.method == "POST" else request.GET.get("q")
    return (raw or "").strip()[:200]


@membership_required()
def endpoint_detail_view(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint_or_404(request, endpoint_id)
    context = _catalog_context(endpoint, _query(request))
    if _is_htmx(request) and request.headers.get("HX-Target") == "catalog-sections":
        return render(request, "endpoints/catalog_sections.html", context)
    context["client_setups"] = endpoint_client_setups(name=endpoint.slug, url=endpoint.url)
    return render(request, "endpoints/detail.html", context)


def _back_to_catalog(endpoint: Endpoint, query: str) -> HttpResponse:
    url = reverse("endpoint-detail", kwargs={"endpoint_id": endpoint.pk})
    return redirect(f"{url}?{urlencode({'q': query})}#catalog" if query else f"{url}#catalog")


@membership_required(admin=True)
@require_POST
def endpoint_entry_toggle_view(
    request: HttpRequest, endpoint_id: str, entry_id: str
) -> HttpResponse:
    """Switch one entry on or off; htmx gets its server's section back, counts updated."""
    endpoint = _endpoint_or_404(request, endpoint_id)
    row = selectors.endpoint_catalog_row(endpoint=endpoint, entry_id=entry_id)
    if row is None:
        raise Http404("Not part of this endpoint")
    # The target state rather than "flip", so a double click cannot undo itself.
    enabled = request.POST.get("enabled") == "1"
    result = services.endpoint_entries_set_enabled(
        endpoint=endpoint, entry_ids=[row.entry_id], enabled=enabled, actor=request.user
    )
    query = _query(request)
    if result.skipped:
        messages.error(
            request, f"“{row.key}” changed upstream or is missing: review it before enabling it."
        )
    if not _is_htmx(request):
        return _back_to_catalog(endpoint, query)
    context = _catalog_context(endpoint, query)
    section = next(s for s in context["sections"] if s.connection.pk == row.connection_id)
    return render(request, "endpoints/toggle_response.html", {**context, "section": section})


@membership_required(admin=True)
@require_POST
def endpoint_entries_bulk_view(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    """ "Enable all shown" / "disable all shown": applies to exactly the entry ids posted."""
    endpoint = _endpoint_or_404(request, endpoint_id)
    enabled = request.POST.get("enabled") == "1"
    query = _query(request)
    level = "success"
    try:
        result = services.endpoint_entries_set_enabled(
            endpoint=endpoint,
            entry_ids=request.POST.getlist("entry"),
            enabled=enabled,
            actor=request.user,
        )
    except ValidationError as error:
        level, notice = "error", " ".join(error.messages)
    else:
        verb = "Enabled" if enabled else "Disabled"
        notice = f"{verb} {result.changed} {'entry' if result.changed == 1 else 'entries'}."
        if result.skipped:
            notice += (
                f" Left {len(result.skipped)} alone that changed upstream or are missing: "
                "review them one by one."
            )
    if not _is_htmx(request):
        messages.add_message(
            request, messages.SUCCESS if level == "success" else messages.ERROR, notice
        )
        return _back_to_catalog(endpoint, query)
    return render(
        request,
        "endpoints/catalog_sections.html",
        {**_catalog_context(endpoint, query), "notice": notice, "notice_level": level},
    )


def _definition_lines(old: Any, new: Any) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """Both definitions as pretty JSON lines, each flagged when it differs from the other side."""
    left = json.dumps(old, indent=2, ensure_ascii=False).splitlines() if old is not None else []
    right = json.dumps(new, indent=2, ensure_ascii=False).splitlines()
    left_changed = [True] * len(left)
    right_changed = [True] * len(right)
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            left_changed[block.a + offset] = False
            right_changed[block.b + offset] = False
    return list(zip(left, left_changed, strict=True)), list(zip(right, right_changed, strict=True))


@membership_required()
@require_http_methods(["GET", "POST"])
def endpoint_entry_view(request: HttpRequest, endpoint_id: str, entry_id: str) -> HttpResponse:
    """One entry: its alias and description, its definition, and the review of a change."""
    endpoint = _endpoint_or_404(request, endpoint_id)
    row = selectors.endpoint_catalog_row(endpoint=endpoint, entry_id=entry_id)
    entry = (
        None
        if row is None
        else selectors.catalog_entry_for_endpoint(endpoint=endpoint, entry_id=row.entry_id)
    )
    if row is None or entry is None:
        raise Http404("Not part of this endpoint")
    is_admin = request.membership.is_admin  # type: ignore[attr-defined]
    if request.method == "POST" and not is_admin:
        return render(
            request,
            "forbidden.html",
            {"reason": "Only an organisation admin can do this."},
            status=403,
        )
    form = EntryForm(request.POST or None, row=row)
    if request.method == "POST" and form.is_valid():
        try:
            services.endpoint_entry_edit(
                endpoint=endpoint,
                entry_id=row.entry_id,
                actor=request.user,
                **form.service_arguments(),
            )
        except ValidationError as error:
            form.add_service_errors(error)
        else:
            messages.success(request, f"Saved “{row.key}”.")
            return redirect("endpoint-entry", endpoint_id=endpoint.pk, entry_id=row.entry_id)
    approved = selectors.endpoint_approved_definition(endpoint=endpoint, entry=entry)
    old_lines, new_lines = _definition_lines(approved, entry.definition)
    return render(
        request,
        "endpoints/entry.html",
        {
            "endpoint": endpoint,
            "row": row,
            "entry": entry,
            "form": form,
            "old_lines": old_lines,
            "new_lines": new_lines,
        },
    )


@membership_required(admin=True)
@require_POST
def endpoint_entry_review_view(
    request: HttpRequest, endpoint_id: str, entry_id: str
) -> HttpResponse:
    """Accept a definition that changed upstream (and serve it again), or keep it disabled."""
    endpoint = _endpoint_or_404(request, endpoint_id)
    row = selectors.endpoint_catalog_row(endpoint=endpoint, entry_id=entry_id)
    if row is None:
        raise Http404("Not part of this endpoint")
    try:
        if request.POST.get("decision") == "accept":
            services.endpoint_entry_accept(
                endpoint=endpoint, entry_id=row.entry_id, actor=request.user
            )
            messages.success(request, f"Accepted the new definition of “{row.key}”; it is enabled.")
        else:
            services.endpoint_entries_set_enabled(
                endpoint=endpoint, entry_ids=[row.entry_id], enabled=False, actor=request.user
            )
            messages.success(request, f"“{row.key}” stays disabled.")
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    return redirect("endpoint-entry", endpoint_id=endpoint.pk, entry_id=row.entry_id)


# --- authorized sessions -------------------------------------------------------------


@membership_required()
def endpoint_sessions_view(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    """Who can call the endpoint: OAuth clients and API tokens (admins: all; others: own)."""
    endpoint = _endpoint_or_404(request, endpoint_id)
    rows = selectors.endpoint_sessions(
        endpoint=endpoint,
        membership=request.membership,  # type: ignore[attr-defined]
    )
    return render(request, "endpoints/sessions.html", {"endpoint": endpoint, "sessions": rows})


@membership_required()
@require_POST
def endpoint_session_revoke_view(
    request: HttpRequest, endpoint_id: str, session_id: str
) -> HttpResponse:
    endpoint = _endpoint_or_404(request, endpoint_id)
    if not services.endpoint_session_revoke(
        endpoint=endpoint,
        membership=request.membership,  # type: ignore[attr-defined]
        session_id=session_id,
    ):
        raise Http404("Session not found")
    messages.success(request, "Revoked: the client is disconnected and must be authorized again.")
    return redirect("endpoint-sessions", endpoint_id=endpoint.pk)
