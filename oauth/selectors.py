"""Reads of organisations, memberships, API tokens and OAuth authorizations."""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet
from django.utils import timezone

from oauth.models import ApiToken, Membership, OAuthAccessToken, OAuthAuthorization, Organization

if TYPE_CHECKING:
    from endpoints.models import Endpoint


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


def oauth_authorization_for_token(*, raw: str) -> OAuthAuthorization | None:
    """The live authorization behind an OAuth access token, or None.

    None for an unknown, expired or revoked token, a token issued outside an
    authorization (a registration token), one without the ``mcp`` scope, and an
    authorization that expired, was revoked or whose user was deactivated.
    """
    if not raw or len(raw) > 512:
        return None
    checksum = hashlib.sha256(raw.encode()).hexdigest()
    token = (
        OAuthAccessToken.objects.select_related("authorization__user", "authorization__endpoint")
        .filter(token_checksum=checksum, authorization__isnull=False)
        .first()
    )
    now = timezone.now()
    if token is None or token.expires <= now or "mcp" not in token.scope.split():
        return None
    authorization = token.authorization
    if (
        authorization is None
        or authorization.revoked_at is not None
        or authorization.expires_at <= now
        or not authorization.user.is_active
    ):
        return None
    return authorization


def oauth_authorization_list(
    *, endpoint: Endpoint, user: User | None = None, include_ended: bool = False
) -> QuerySet[OAuthAuthorization]:
    """The endpoint's authorized sessions, newest first (only ``user``'s when given).

    Live ones only, unless ``include_ended``.
    """
    query = OAuthAuthorization.objects.filter(endpoint=endpoint).select_related(
        "user", "application"
    )
    if user is not None:
        query = query.filter(user=user)
    if not include_ended:
        query = query.filter(revoked_at__isnull=True, expires_at__gt=timezone.now())
    return query.order_by("-granted_at")


def oauth_authorization_get(
    *, endpoint: Endpoint, authorization_id: str | uuid.UUID
) -> OAuthAuthorization | None:
    """One authorization of the endpoint, or None (also for a malformed id)."""
    try:
        key = uuid.UUID(str(authorization_id))
    except ValueError:
        return None
    return (
        OAuthAuthorization.objects.filter(endpoint=endpoint, pk=key)
        .select_related("user", "application")
        .first()
    )
