"""Admin UI pages for connections."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from connections import credentials, selectors, services
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
    return render(
        request,
        "connections/form.html",
        {
            "form": form,
            "connection": None,
            "oauth_redirect_uri": credentials.oauth_redirect_uri(),
        },
    )


@membership_required()
def connection_detail_view(request: HttpRequest, connection_id: str) -> HttpResponse:
    connection = _connection_or_404(request, connection_id)
    is_admin = request.membership.is_admin  # type: ignore[attr-defined]
    stored = selectors.connection_credentials(connection=connection)
    shared = next((c for c in stored if c.user_id is None), None)
    own = next((c for c in stored if c.user_id == request.user.pk), None)
    rows = [
        (c, credentials.credential_display_state(c))
        for c in stored
        if c.user_id is not None and (is_admin or c.user_id == request.user.pk)
    ]
    return render(
        request,
        "connections/detail.html",
        {
            "connection": connection,
            "catalog": selectors.connection_catalog(connection=connection),
            "history": selectors.connection_health_history(connection=connection),
            "stdio_allowed": settings.GATEWAY_ALLOW_STDIO,
            "stdio_disabled_reason": services.STDIO_DISABLED,
            "shared_credential": shared,
            "shared_state": (
                credentials.credential_display_state(shared) if shared is not None else "missing"
            ),
            "credential_rows": rows,
            "own_credential": own,
        },
    )


@membership_required(admin=True)
@require_POST
def connection_check_view(request: HttpRequest, connection_id: str) -> HttpResponse:
    connection = _connection_or_404(request, connection_id)
    check = services.connection_check_health(connection=connection, user=request.user)
    if check.ok:
        messages.success(request, f"“{connection.name}” is reachable ({check.latency_ms} ms).")
    elif check.error_kind == "needs_credential":
        # A step of setting up (nobody connected yet, not signed in), not a server failure.
        messages.info(request, f"“{connection.name}” cannot be checked yet: {check.error}")
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
    return render(
        request,
        "connections/form.html",
        {
            "form": form,
            "connection": connection,
            "oauth_redirect_uri": credentials.oauth_redirect_uri(),
        },
    )


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


# --- the user's own credentials ("My connections") ------------------------------------------


def _next_url(request: HttpRequest) -> str | None:
    """Where to return after connecting (the consent page sends its own address), if safe."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return None


def _back(request: HttpRequest) -> HttpResponse:
    return redirect(_next_url(request) or "my-connections")


@membership_required()
def my_connections_view(request: HttpRequest) -> HttpResponse:
    """Every user's page: the servers that need their own credential, and its status."""
    rows = selectors.my_connections(
        organization=request.membership.organization,  # type: ignore[attr-defined]
        user=request.user,
    )
    return render(
        request, "connections/my_connections.html", {"rows": rows, "next": _next_url(request)}
    )


def _personal_connection_or_404(request: HttpRequest, connection_id: str) -> Connection:
    connection = _connection_or_404(request, connection_id)
    if not connection.is_personal:
        raise Http404("MCP connection not found")
    return connection


@membership_required()
@require_POST
def my_connection_token_view(request: HttpRequest, connection_id: str) -> HttpResponse:
    connection = _personal_connection_or_404(request, connection_id)
    try:
        credentials.personal_token_set(
            connection=connection, user=request.user, token=request.POST.get("token")
        )
    except ValidationError as error:
        for messages_ in error.message_dict.values():
            for message in messages_:
                messages.error(request, f"{connection.name}: {message}")
        return _back(request)
    messages.success(request, f"Your token for “{connection.name}” is saved.")
    return _back(request)


@membership_required()
@require_POST
def my_connection_disconnect_view(request: HttpRequest, connection_id: str) -> HttpResponse:
    connection = _personal_connection_or_404(request, connection_id)
    if credentials.credential_remove(connection=connection, user=request.user):
        messages.success(request, f"“{connection.name}” is disconnected: your credential is gone.")
    return _back(request)


@membership_required()
@require_POST
def my_connection_connect_view(request: HttpRequest, connection_id: str) -> HttpResponse:
    """Send the user to the server's sign-in (their own credential, personal mode)."""
    connection = _personal_connection_or_404(request, connection_id)
    try:
        url = credentials.oauth_sign_in_start(
            connection=connection,
            user=request.user,
            shared=False,
            return_to=_next_url(request) or "",
        )
    except credentials.SignInError as error:
        messages.error(request, f"{connection.name}: {error.message}")
        return _back(request)
    return HttpResponseRedirect(url)


@membership_required(admin=True)
@require_POST
def connection_oauth_connect_view(request: HttpRequest, connection_id: str) -> HttpResponse:
    """An admin signs in once for a shared-mode OAuth connection."""
    connection = _connection_or_404(request, connection_id)
    try:
        url = credentials.oauth_sign_in_start(connection=connection, user=request.user, shared=True)
    except credentials.SignInError as error:
        messages.error(request, error.message)
        return redirect("connection-detail", connection_id=connection.pk)
    return HttpResponseRedirect(url)


@membership_required(admin=True)
@require_POST
def connection_oauth_disconnect_view(request: HttpRequest, connection_id: str) -> HttpResponse:
    connection = _connection_or_404(request, connection_id)
    if credentials.credential_remove(connection=connection, user=None, actor=request.user):
        messages.success(request, f"The shared sign-in to “{connection.name}” is removed.")
    return redirect("connection-detail", connection_id=connection.pk)


@login_required
def upstream_oauth_callback_view(request: HttpRequest) -> HttpResponse:
    """Where an upstream's authorization server sends the browser back with a code."""
    params = {
        key: request.GET[key] for key in ("state", "code", "error", "iss") if key in request.GET
    }
    try:
        result = credentials.oauth_sign_in_finish(user=request.user, params=params)
    except credentials.SignInError as error:
        return render(
            request, "connections/sign_in_error.html", {"message": error.message}, status=400
        )
    name = result.connection.name
    if result.shared:
        messages.success(request, f"The gateway is signed in to “{name}” for everyone.")
        return redirect("connection-detail", connection_id=result.connection.pk)
    messages.success(request, f"You are connected to “{name}”.")
    back = result.return_to
    if back and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return redirect(back)
    return redirect("my-connections")


def upstream_oauth_client_view(request: HttpRequest) -> JsonResponse:
    """The gateway's OAuth client ID metadata document, fetched by upstream authorization
    servers that support them (its URL is the gateway's client id there)."""
    response = JsonResponse(credentials.oauth_client_document())
    response["Cache-Control"] = "public, max-age=3600"
    return response
