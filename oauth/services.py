"""Writes of organisations, memberships, API tokens and OAuth authorizations."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify

from audit.services import management_event_record
from oauth.models import (
    ApiToken,
    Membership,
    OAuthAccessToken,
    OAuthApplication,
    OAuthAuthorization,
    OAuthGrant,
    OAuthRefreshToken,
    Organization,
    Role,
    authorization_code_digest,
)

API_TOKEN_PREFIX = "gwt_"
# Writing last_used_at on every request would turn reads into writes; once a minute is enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def organization_create(*, name: str, slug: str | None = None) -> Organization:
    """Create an organisation; the slug defaults to one made from the name."""
    name = name.strip()
    slug = slugify(slug or name)[:100]
    if not name or not slug:
        raise ValidationError({"name": ["Give the organisation a name."]})
    if Organization.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": [f"An organisation with the slug {slug!r} exists."]})
    return Organization.objects.create(name=name, slug=slug)


def membership_set(*, organization: Organization, user: User, role: str) -> Membership:
    """Make the user a member of the organisation with the role (or change the role)."""
    if role not in Role.values:
        raise ValidationError({"role": [f"Choose one of: {', '.join(Role.values)}."]})
    membership, _ = Membership.objects.update_or_create(
        organization=organization, user=user, defaults={"role": role}
    )
    return membership


def _token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_token_create(
    *, organization: Organization, user: User, name: str, actor: User | None = None
) -> tuple[ApiToken, str]:
    """Create an API token for the user in the organisation.

    Returns the stored token and the raw token string, which is shown once and
    never stored. ``actor`` (who created it) is recorded in the activity log.
    """
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": ["Give the token a name, e.g. the script that uses it."]})
    if len(name) > 100:
        raise ValidationError({"name": ["Use at most 100 characters."]})
    if not Membership.objects.filter(organization=organization, user=user).exists():
        raise ValidationError({"user": ["The user is not a member of this organisation."]})
    raw = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        organization=organization,
        user=user,
        name=name,
        prefix=raw[: len(API_TOKEN_PREFIX) + 6],
        token_hash=_token_hash(raw),
    )
    management_event_record(
        organization_id=organization.pk,
        action="token.created",
        target_type="api_token",
        target_id=token.pk,
        target_name=token.name,
        actor=actor,
        details={"user": user.get_username(), "prefix": token.prefix},
    )
    return token, raw


def api_token_authenticate(*, raw: str) -> ApiToken | None:
    """The active token matching ``raw`` (with its user and organisation), or None.

    Records when the token was last used, at most once a minute.
    """
    if not raw.startswith(API_TOKEN_PREFIX) or len(raw) > 200:
        return None
    token = (
        ApiToken.objects.select_related("user", "organization")
        .filter(token_hash=_token_hash(raw), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: User | None = None) -> ApiToken:
    """Revoke a token; it stops working at once, and MCP streams opened with it close."""
    from endpoints.events import principal_revoked_on_commit

    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        management_event_record(
            organization_id=token.organization_id,
            action="token.revoked",
            target_type="api_token",
            target_id=token.pk,
            target_name=token.name,
            actor=actor,
        )
    principal_revoked_on_commit(principal_key=f"api_token:{token.pk}")
    return token


def user_ensure_admin(*, username: str, password: str | None) -> tuple[User, str | None]:
    """Create the first admin account if no superuser exists.

    Returns the user and the password when one was generated (to print once),
    else None. An existing account is left as it is.
    """
    User = get_user_model()
    existing = User.objects.filter(is_superuser=True).order_by("pk").first()
    if existing is not None:
        return existing, None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(12)
    user = User.objects.create_superuser(username=username, email="", password=password)
    return user, generated


def oauth_usage_record(*, counts: dict[str, int]) -> None:
    """Add the calls made per principal since the transport's last flush.

    Keys are ``oauth:<authorization id>`` or ``api_token:<token id>``; the
    transport counts in memory and flushes every few seconds, so a call costs no
    write. Authorizations also get ``last_used_at`` (API tokens get theirs when
    they authenticate).
    """
    now = timezone.now()
    for key, count in counts.items():
        kind, _, ident = key.partition(":")
        try:
            pk = uuid.UUID(ident)
        except ValueError:
            continue
        if kind == "oauth":
            OAuthAuthorization.objects.filter(pk=pk).update(
                call_count=F("call_count") + count, last_used_at=now
            )
        elif kind == "api_token":
            ApiToken.objects.filter(pk=pk).update(call_count=F("call_count") + count)


@transaction.atomic
def oauth_authorization_revoke(
    *, authorization: OAuthAuthorization, actor: User | None = None, reason: str = ""
) -> OAuthAuthorization:
    """Revoke an authorized session: its tokens stop working and its MCP streams close.

    The tokens are deleted (a refresh token can no longer be exchanged, an access
    token no longer validates); once the transaction commits every gateway
    instance drops the cached token and closes the client's open streams, so its
    next request gets 401 and it must ask the user again. ``reason`` is recorded
    when the gateway revokes on its own (no ``actor``).
    """
    from endpoints.events import principal_revoked_on_commit

    if authorization.revoked_at is None:
        authorization.revoked_at = timezone.now()
        authorization.save(update_fields=["revoked_at"])
        details = {"endpoint": authorization.endpoint.name}
        if reason:
            details["reason"] = reason
        management_event_record(
            organization_id=authorization.endpoint.organization_id,
            action="session.revoked",
            target_type="oauth_session",
            target_id=authorization.pk,
            target_name=f"{authorization.client_name} for {authorization.user.get_username()}",
            actor=actor,
            details=details,
        )
    OAuthRefreshToken.objects.filter(authorization=authorization).delete()
    OAuthAccessToken.objects.filter(authorization=authorization).delete()
    principal_revoked_on_commit(principal_key=f"oauth:{authorization.pk}")
    return authorization


def oauth_authorization_code_replayed(*, application: OAuthApplication, code: str) -> int:
    """A client's authorization code came back after its one exchange attempt.

    RFC 6749 §4.1.2: refuse it and revoke what it issued, since the code may have
    been stolen and either party can be the attacker. The code is deleted first:
    an exchange of it still in progress holds its row (``select_for_update``), so
    this waits for it to commit and then revokes its tokens, or it finds the row
    gone and issues nothing. Returns how many authorizations were revoked.
    """
    OAuthGrant.objects.filter(code=code, application=application).delete()
    issued = OAuthAuthorization.objects.select_related("endpoint", "user").filter(
        application=application,
        code_digest=authorization_code_digest(code),
        revoked_at__isnull=True,
    )
    revoked = 0
    for authorization in issued:
        oauth_authorization_revoke(
            authorization=authorization, reason="its authorization code was used again"
        )
        revoked += 1
    return revoked


def oauth_clients_unused_delete(*, older_than: timedelta, limit: int = 500) -> int:
    """Delete self-registered clients never used for ``older_than``; returns how many.

    Clients such as Claude register a new client on every connection attempt; a
    registration that never obtained a token (or has not for ``older_than``) and
    has no live authorization is dead weight. Admin-created applications stay.
    """
    now = timezone.now()
    cutoff = now - older_than
    live = OAuthAuthorization.objects.filter(revoked_at__isnull=True, expires_at__gt=now)
    stale = list(
        OAuthApplication.objects.exclude(
            registration_source=OAuthApplication.RegistrationSource.MANUAL
        )
        .filter(created__lt=cutoff)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=cutoff))
        .exclude(pk__in=live.values("application_id"))
        .values_list("pk", flat=True)[:limit]
    )
    OAuthApplication.objects.filter(pk__in=stale).delete()
    return len(stale)
