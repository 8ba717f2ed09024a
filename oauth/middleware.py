"""Puts the signed-in user's current organisation on every request."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from oauth.selectors import membership_get, membership_list_for_user

SESSION_KEY = "organization_id"


def membership_for_session(request: HttpRequest) -> None:
    """Set ``request.membership`` from the session's chosen organisation.

    Falls back to the user's first organisation, and to None for a user who
    belongs to none.
    """
    request.membership = None  # type: ignore[attr-defined]
    user = request.user
    if not user.is_authenticated:
        return
    membership = membership_get(user=user, organization_id=request.session.get(SESSION_KEY))
    if membership is None:
        membership = membership_list_for_user(user=user).first()
        if membership is not None:
            request.session[SESSION_KEY] = str(membership.organization_id)
    request.membership = membership  # type: ignore[attr-defined]


class OrganizationMiddleware:
    """Resolve the current membership for signed-in users (UI and session API calls)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        membership_for_session(request)
        return self.get_response(request)
