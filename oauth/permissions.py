"""REST API permissions: membership of the organisation, and the admin role for writes."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from oauth.models import ApiToken, Membership


def api_membership(request: Request) -> Membership | None:
    """The membership an API request acts with.

    With an API token: the token user's membership of the token's organisation
    (gone if the user was removed from it). With the session: the organisation
    chosen in the UI.
    """
    if hasattr(request, "_gateway_membership"):
        cached: Membership | None = request._gateway_membership
        return cached
    membership: Membership | None
    if isinstance(request.auth, ApiToken):
        membership = (
            Membership.objects.select_related("organization")
            .filter(organization=request.auth.organization, user=request.auth.user)
            .first()
        )
    else:
        membership = getattr(request._request, "membership", None)
    request._gateway_membership = membership  # type: ignore[attr-defined]
    return membership


class IsOrganizationMember(BasePermission):
    """Signed in (token or session) and a member of an organisation."""

    message = "You are not a member of this organisation."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        return api_membership(request) is not None


class IsAdminOrReadOnly(IsOrganizationMember):
    """Any member may read; only admins may write."""

    message = "Only an organisation admin can change this."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not super().has_permission(request, view):
            self.message = IsOrganizationMember.message
            return False
        membership = api_membership(request)
        return request.method in SAFE_METHODS or bool(membership and membership.is_admin)
