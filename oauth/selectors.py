"""Reads of organisations, memberships and API tokens."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from oauth.models import ApiToken, Membership, Organization


def membership_list_for_user(*, user: User | AnonymousUser) -> QuerySet[Membership]:
    """The user's memberships, with their organisations, by organisation name."""
    if not user.is_authenticated:
        return Membership.objects.none()
    return (
        Membership.objects.filter(user=user)
        .select_related("organization")
        .order_by("organization__name")
    )


def membership_get(
    *, user: User | AnonymousUser, organization_id: str | uuid.UUID | None
) -> Membership | None:
    """The user's membership of that organisation, or None (also for a malformed id)."""
    if not user.is_authenticated or organization_id is None:
        return None
    try:
        key = uuid.UUID(str(organization_id))
    except ValueError:
        return None
    return (
        Membership.objects.filter(user=user, organization_id=key)
        .select_related("organization")
        .first()
    )


def api_token_list(*, organization: Organization, user: User) -> QuerySet[ApiToken]:
    """The user's API tokens in the organisation, newest first."""
    return ApiToken.objects.filter(organization=organization, user=user).order_by("-created_at")


def api_token_get(
    *, organization: Organization, user: User, token_id: str | uuid.UUID
) -> ApiToken | None:
    """One of the user's API tokens in the organisation, or None."""
    try:
        key = uuid.UUID(str(token_id))
    except ValueError:
        return None
    return ApiToken.objects.filter(organization=organization, user=user, pk=key).first()
