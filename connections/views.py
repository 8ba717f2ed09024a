"""Admin UI pages for connections."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from connections import selectors, services
from connections.forms import ConnectionForm
from connections.models import Connection
from oauth.decorators import membership_required


def _connection_or_404(request: HttpRequest, connection_id: str) -> Connection:
    connection = selectors.connection_get(
        organization=request.membership.organization,  # type: ignore[attr-defined]
        connection_id=connection_id,
    )
    if connection is None:
        raise Http404("MCP connection not found")
    return connection


@membership_required()
def connection_list_view(request: HttpRequest) -> HttpResponse:
    connections = selectors.connection_list(
        organization=request.membership.organization  # type: ignore[attr-defined]
    )
    return render(request, "connections/list.html", {"connections": connections})


@membership_required(admin=True)
@require_http_methods(["GET", "POST"])
def connection_create_view(request: HttpRequest) -> HttpResponse:
    form = ConnectionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            connection = services.connection_create(
                organization=request.membership.organization,  # type: ignore[attr-defined]
                actor=request.user,
                **form.service_arguments(),
            )
        except ValidationError as error:
            form.add_service_errors(error)
        else:
            messages.success(request, f"Connection “{connection.name}” created.")
            return redirect("connection-detail", connection_id=connection.pk)
    return render(request, "connections/form.html", {"form": form, "connection": None})


@membership_required()
def connection_detail_view(request: HttpRequest, connection_id: str) -> HttpResponse:
    connection = _connection_or_404(request, connection_id)
    return render(
        request,
        "connections/detail.html",
        {
            "connection": connection,
            "catalog": selectors.connection_catalog(connection=connection),
            "history": selectors.connection_health_history(connection=connection),
            "stdio_allowed": settings.GATEWAY_ALLOW_STDIO,
            "stdio_disabled_reason": services.STDIO_DISABLED,
        },
    )


@membership_required(admin=True)
@require_POST
def connection_check_view(request: HttpRequest, connection_id: str) -> HttpResponse:
    connection = _connection_or_404(request, connection_id)
    check = services.connection_check_health(connection=connection)
    if check.ok:
        messages.success(request, f"“{connection.name}” is reachable ({check.latency_ms} ms).")
    else:
        messages.error(request, f"“{connection.name}” failed its check: {check.error}")
    return redirect("connection-detail", connection_id=connection.pk)


@membership_required(admin=True)
@require_http_methods(["GET", "POST"])
def connection_edit_view(request: HttpRequest, connection_id: str) -> HttpResponse:
    connection = _connection_or_404(request, connection_id)
    form = ConnectionForm(request.POST or None, connection=connection)
    if request.method == "POST" and form.is_valid():
        try:
            services.connection_update(
                connection=connection, actor=request.user, **form.service_arguments()
            )
        except ValidationError as error:
            form.add_service_errors(error)
            connection.refresh_from_db()
        else:
            messages.success(request, f"Connection “{connection.name}” saved.")
            return redirect("connection-detail", connection_id=connection.pk)
    return render(request, "connections/form.html", {"form": form, "connection": connection})


@membership_required(admin=True)
@require_http_methods(["GET", "POST"])
def connection_delete_view(request: HttpRequest, connection_id: str) -> HttpResponse:
    connection = _connection_or_404(request, connection_id)
    if request.method == "POST":
        name = connection.name
        services.connection_delete(connection=connection, actor=request.user)
        messages.success(request, f"Connection “{name}” deleted.")
        return redirect("connection-list")
    return render(request, "connections/delete.html", {"connection": connection})
