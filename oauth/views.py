"""Admin UI pages for signing in, switching organisation and API tokens."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from oauth import selectors, services
from oauth.decorators import membership_required
from oauth.middleware import SESSION_KEY


def _user(request: HttpRequest) -> User:
    """The signed-in user (the views' decorators guarantee there is one)."""
    assert isinstance(request.user, User)
    return request.user


@login_required
@require_POST
def organization_switch_view(request: HttpRequest) -> HttpResponse:
    membership = selectors.membership_get(
        user=request.user, organization_id=request.POST.get("organization")
    )
    if membership is None:
        raise Http404("Organisation not found")
    request.session[SESSION_KEY] = str(membership.organization_id)
    messages.info(request, f"Switched to {membership.organization.name}.")
    target = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = "/"
    return redirect(target)


# The raw token of the one just created, kept in the session between the POST and
# the page it redirects to, and removed as it is shown: a refresh neither creates a
# second token nor shows this one again.
NEW_TOKEN_SESSION_KEY = "api_token_just_created"


@membership_required()
@require_http_methods(["GET", "POST"])
def api_token_list_view(request: HttpRequest) -> HttpResponse:
    organization = request.membership.organization  # type: ignore[attr-defined]
    error = None
    if request.method == "POST":
        try:
            _, raw = services.api_token_create(
                organization=organization,
                user=_user(request),
                name=request.POST.get("name", ""),
                actor=_user(request),
            )
        except ValidationError as exc:
            error = " ".join(m for messages_ in exc.message_dict.values() for m in messages_)
        else:
            request.session[NEW_TOKEN_SESSION_KEY] = raw
            return redirect("api-tokens")
    new_token = request.session.pop(NEW_TOKEN_SESSION_KEY, None)
    tokens = selectors.api_token_list(organization=organization, user=_user(request))
    response = render(
        request,
        "oauth/api_tokens.html",
        {"tokens": tokens, "new_token": new_token, "error": error},
        status=400 if error else 200,
    )
    if new_token:
        response["Cache-Control"] = "no-store"  # the back button must not show it again
    return response


@membership_required()
@require_POST
def api_token_revoke_view(request: HttpRequest, token_id: str) -> HttpResponse:
    token = selectors.api_token_get(
        organization=request.membership.organization,  # type: ignore[attr-defined]
        user=_user(request),
        token_id=token_id,
    )
    if token is None:
        raise Http404("API token not found")
    services.api_token_revoke(token=token, actor=_user(request))
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("api-tokens")
