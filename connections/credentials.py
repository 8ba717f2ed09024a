"""Services of upstream credentials: personal tokens, OAuth tokens, refresh and states.

A connection in *shared* mode uses one credential for every user: its bearer
token (``Connection.credential``), or with ``authType: oauth`` the tokens an
admin obtained by signing in once (an ``UpstreamCredential`` without a user).
In *personal* mode every user brings their own ``UpstreamCredential``: a
token they pasted, or the tokens of their own sign-in to the server.

Every change publishes ``credentials_changed`` (``connections.signals``) once
committed, so each gateway process drops the upstream targets it cached for
that (connection, user); every change is recorded in the activity log's
management events, never with a secret value.

OAuth tokens are refreshed before they expire (``credentials_refresh_due``,
run by Celery beat) and when an upstream answers 401. One process refreshes a
credential at a time (a claim taken with a conditional UPDATE): rotating
refresh tokens are single-use, and two refreshes racing would make the second
look revoked. A refresh the authorization server refuses (``invalid_grant``
and the like) marks the credential ``needs_reauth``: calls then answer an
error naming the page where the user signs in again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from mcp.shared.auth import OAuthToken

from audit.redaction import secret_values_register
from audit.services import management_event_record
from connections import upstream_oauth
from connections.models import (
    AuthType,
    Connection,
    CredentialKind,
    CredentialState,
    UpstreamCredential,
    UpstreamOAuthFlow,
)
from connections.signals import credentials_changed
from connections.upstream import UpstreamError

logger = logging.getLogger(__name__)

Actor = AbstractBaseUser | AnonymousUser | None

TOKEN_MAX: Final = 8192
REFRESH_LEASE: Final = timedelta(seconds=30)
# How long a call waits for another process's refresh of the same credential.
REFRESH_WAIT_SECONDS: Final = 15.0
# An access token this close to its expiry is not sent any more: it is refreshed first.
EXPIRY_SLACK: Final = timedelta(seconds=5)


def my_connections_url() -> str:
    """The absolute URL of the "My connections" page (for messages sent to AI clients)."""
    return settings.GATEWAY_PUBLIC_URL.rstrip("/") + reverse("my-connections")


def refresh_margin() -> timedelta:
    return timedelta(seconds=settings.GATEWAY_UPSTREAM_OAUTH_REFRESH_MARGIN)


def credential_display_state(credential: UpstreamCredential, *, now: datetime | None = None) -> str:
    """``valid``, ``expiring`` (its access token expires within the refresh margin) or
    ``needs_reauth``."""
    if credential.state == CredentialState.NEEDS_REAUTH or credential.unreadable:
        return "needs_reauth"
    now = now or timezone.now()
    if credential.expires_at is not None and credential.expires_at <= now + refresh_margin():
        return "expiring"
    return "valid"


def credential_get(*, connection: Connection, user_id: int | None) -> UpstreamCredential | None:
    """The user's credential for the connection (``user_id`` None: the shared OAuth one)."""
    found = UpstreamCredential.objects.filter(connection=connection)
    found = found.filter(user__isnull=True) if user_id is None else found.filter(user_id=user_id)
    return found.first()


def _changed_on_commit(*, connection_id: Any, user_id: int | None) -> None:
    """Tell every process, once committed, to drop the targets cached for this credential."""
    transaction.on_commit(
        lambda: credentials_changed.send(
            sender=UpstreamCredential, connection_id=str(connection_id), user_id=user_id
        ),
        robust=True,
    )


def connection_credentials_changed(*, connection: Connection) -> None:
    """The connection's own way of authenticating changed (mode, token, URL): every user's
    cached target is stale."""
    _changed_on_commit(connection_id=connection.pk, user_id=None)


def _record(
    *,
    connection: Connection,
    change: str,
    actor: Actor,
    user: Any = None,
    details: dict[str, Any] | None = None,
) -> None:
    management_event_record(
        organization_id=connection.organization_id,
        action="connection.credentials_changed",
        target_type="connection",
        target_id=connection.pk,
        target_name=connection.name,
        actor=actor,
        details={
            "change": change,
            "user": user.get_username() if user is not None else None,
            **(details or {}),
        },
    )


def _clean_token(token: Any) -> str:
    if not isinstance(token, str) or not token.strip():
        raise ValidationError({"token": ["Paste the token."]})
    token = token.strip()
    if len(token) > TOKEN_MAX:
        raise ValidationError({"token": [f"Use at most {TOKEN_MAX} characters."]})
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in token):
        raise ValidationError({"token": ["The token cannot contain spaces or control characters."]})
    return token


def personal_token_set(
    *, connection: Connection, user: Any, token: Any, actor: Actor = None
) -> UpstreamCredential:
    """Store the user's own token for a personal-mode bearer connection (replacing theirs)."""
    if not connection.is_personal:
        raise ValidationError(
            {"token": ["This server uses one shared credential, set by an admin."]}
        )
    if connection.auth_type != AuthType.BEARER:
        raise ValidationError(
            {"token": ["This server uses OAuth: sign in to it instead of pasting a token."]}
        )
    clean = _clean_token(token)
    with transaction.atomic():
        credential = credential_get(connection=connection, user_id=user.pk)
        if credential is None:
            credential = UpstreamCredential(connection=connection, user=user)
        credential.kind = CredentialKind.TOKEN
        credential.secret = {"token": clean}
        credential.expires_at = None
        credential.state = CredentialState.VALID
        credential.state_reason = ""
        try:
            with transaction.atomic():
                credential.save()
        except IntegrityError:
            raise ValidationError({"token": ["Saved twice at once: try again."]}) from None
        _record(connection=connection, change="personal_token_set", actor=actor or user, user=user)
        _changed_on_commit(connection_id=connection.pk, user_id=user.pk)
    secret_values_register([clean])
    return credential


def credential_remove(*, connection: Connection, user: Any, actor: Actor = None) -> bool:
    """Forget a credential: the user's own, or with ``user`` None the shared OAuth one.

    Returns whether there was one. The upstream is not told (the user may revoke
    the grant at the server); the gateway simply never uses it again.
    """
    user_id = None if user is None else user.pk
    with transaction.atomic():
        credential = credential_get(connection=connection, user_id=user_id)
        if credential is None:
            return False
        kind = credential.kind
        credential.delete()
        _record(
            connection=connection,
            change="shared_oauth_removed" if user is None else "personal_removed",
            actor=actor if actor is not None else user,
            user=user,
            details={"kind": kind},
        )
        _changed_on_commit(connection_id=connection.pk, user_id=user_id)
    return True


def oauth_credential_store(
    *,
    connection: Connection,
    user: Any,
    token: OAuthToken,
    token_endpoint: str,
    resource: str,
    issuer: str,
    actor: Actor,
) -> UpstreamCredential:
    """Keep the tokens of a completed sign-in: the user's own, or the shared ones (no user)."""
    user_id = None if user is None else user.pk
    now = timezone.now()
    with transaction.atomic():
        credential = credential_get(connection=connection, user_id=user_id)
        if credential is None:
            credential = UpstreamCredential(connection=connection, user=user)
        credential.kind = CredentialKind.OAUTH
        _oauth_tokens_save(
            credential,
            _oauth_secret(
                token,
                previous=None,
                token_endpoint=token_endpoint,
                resource=resource,
                issuer=issuer,
            ),
            token,
            now,
        )
        _record(
            connection=connection,
            change="shared_oauth_connected" if user is None else "personal_oauth_connected",
            actor=actor,
            user=user,
        )
        _changed_on_commit(connection_id=connection.pk, user_id=user_id)
    secret_values_register(credential.secret_values())
    return credential


def _expiry(token: OAuthToken, now: datetime) -> datetime | None:
    return now + timedelta(seconds=int(token.expires_in)) if token.expires_in else None


def _oauth_secret(
    token: OAuthToken,
    *,
    previous: dict[str, Any] | None,
    token_endpoint: str,
    resource: str,
    issuer: str,
) -> dict[str, Any]:
    old = previous or {}
    return {
        "access_token": token.access_token,
        # A server that does not rotate refresh tokens answers without one: keep the old.
        "refresh_token": token.refresh_token or old.get("refresh_token"),
        "scope": token.scope or old.get("scope") or "",
        "token_endpoint": token_endpoint,
        "resource": resource,
        "issuer": issuer,
    }


def credential_mark_needs_reauth(*, credential: UpstreamCredential, reason: str) -> None:
    """The credential cannot be used or refreshed any more: the user must sign in again.

    Recorded once (a credential already marked is left as it is) and shown on the
    connection and "My connections" pages; calls answer an error naming the page.
    """
    updated = (
        UpstreamCredential.objects.filter(pk=credential.pk)
        .exclude(state=CredentialState.NEEDS_REAUTH)
        .update(
            state=CredentialState.NEEDS_REAUTH,
            state_reason=reason[:300],
            refresh_claimed_until=None,
            updated_at=timezone.now(),
        )
    )
    credential.state, credential.state_reason = CredentialState.NEEDS_REAUTH, reason[:300]
    if not updated:
        return
    connection = credential.connection
    _record(
        connection=connection,
        change="needs_reauth",
        actor=None,
        user=credential.user,
        details={"reason": reason[:300]},
    )
    _changed_on_commit(connection_id=connection.pk, user_id=credential.user_id)
    logger.info(
        "Upstream credential %s of connection %s needs re-authorization: %s",
        credential.pk,
        connection.pk,
        reason,
    )


# --- refresh ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshOutcome:
    """What a refresh came to: ``refreshed`` (now usable), ``needs_reauth`` (the user must
    sign in again), ``failed`` (the server could not be reached: try later)."""

    status: str
    message: str = ""


@dataclass(frozen=True)
class _RefreshPlan:
    credential_id: str
    registration: upstream_oauth.ClientRegistration
    refresh_token: str
    token_endpoint: str
    resource: str
    scope: str
    timeout: float


def _refresh_begin(
    credential_id: str, rejected: str | None
) -> _RefreshPlan | RefreshOutcome | None:
    """Claim the credential for a refresh; None when another process holds the claim.

    With ``rejected`` (the access token an upstream just refused), a credential whose
    access token is already another one was refreshed meanwhile: nothing to do.
    """
    credential = (
        UpstreamCredential.objects.select_related("connection", "user")
        .filter(pk=credential_id)
        .first()
    )
    if credential is None:
        return RefreshOutcome("needs_reauth", "The credential was removed.")
    if credential.state == CredentialState.NEEDS_REAUTH:
        return RefreshOutcome("needs_reauth", credential.state_reason)
    if credential.kind != CredentialKind.OAUTH or credential.unreadable:
        return RefreshOutcome("failed", "This credential cannot be refreshed.")
    if rejected is not None and credential.bearer != rejected:
        return RefreshOutcome("refreshed")
    now = timezone.now()
    claimed = (
        UpstreamCredential.objects.filter(pk=credential.pk)
        .filter(Q(refresh_claimed_until__isnull=True) | Q(refresh_claimed_until__lt=now))
        .update(refresh_claimed_until=now + REFRESH_LEASE)
    )
    if claimed != 1:
        return None
    refresh_token = credential.refresh_token
    registration = upstream_oauth.ClientRegistration.from_json(credential.connection.oauth_client)
    secret = credential.secret if isinstance(credential.secret, dict) else {}
    reason = None
    if not refresh_token:
        reason = "The server gave no refresh token and the access token expired: sign in again."
    elif registration is None:
        reason = "The gateway is no longer registered with the server's authorization server."
    elif not secret.get("token_endpoint"):
        reason = "The sign-in is incomplete: sign in again."
    if reason is not None:
        credential_mark_needs_reauth(credential=credential, reason=reason)
        return RefreshOutcome("needs_reauth", reason)
    assert registration is not None and refresh_token is not None
    return _RefreshPlan(
        credential_id=str(credential.pk),
        registration=registration,
        refresh_token=refresh_token,
        token_endpoint=str(secret["token_endpoint"]),
        resource=str(secret.get("resource") or credential.connection.server_url),
        scope=credential.scope,
        timeout=float(credential.connection.connect_timeout_seconds),
    )


def _oauth_tokens_save(
    credential: UpstreamCredential, secret: dict[str, Any], token: OAuthToken, now: datetime
) -> None:
    """Store newly issued tokens: the credential is valid again, and unclaimed."""
    credential.secret = secret
    credential.expires_at = _expiry(token, now)
    credential.state = CredentialState.VALID
    credential.state_reason = ""
    credential.refreshed_at = now
    credential.refresh_claimed_until = None
    credential.save()


def _refresh_store(plan: _RefreshPlan, token: OAuthToken) -> RefreshOutcome:
    now = timezone.now()
    with transaction.atomic():
        credential = (
            UpstreamCredential.objects.select_for_update()
            .select_related("connection")
            .filter(pk=plan.credential_id)
            .first()
        )
        if credential is None:
            return RefreshOutcome("needs_reauth", "The credential was removed.")
        previous = credential.secret if isinstance(credential.secret, dict) else {}
        secret = _oauth_secret(
            token,
            previous=previous,
            token_endpoint=plan.token_endpoint,
            resource=plan.resource,
            issuer=str(previous.get("issuer") or ""),
        )
        _oauth_tokens_save(credential, secret, token, now)
        _changed_on_commit(connection_id=credential.connection_id, user_id=credential.user_id)
    secret_values_register(credential.secret_values())
    return RefreshOutcome("refreshed")


def _refresh_refused(plan: _RefreshPlan, error: upstream_oauth.TokenRefused) -> RefreshOutcome:
    credential = (
        UpstreamCredential.objects.select_related("connection", "user")
        .filter(pk=plan.credential_id)
        .first()
    )
    if credential is None:
        return RefreshOutcome("needs_reauth", "The credential was removed.")
    reason = f"The server's authorization server refused to renew the sign-in ({error.error})."
    credential_mark_needs_reauth(credential=credential, reason=reason)
    return RefreshOutcome("needs_reauth", reason)


def _refresh_release(plan: _RefreshPlan) -> None:
    UpstreamCredential.objects.filter(pk=plan.credential_id).update(refresh_claimed_until=None)


async def credential_refresh(credential_id: str, *, rejected: str | None = None) -> RefreshOutcome:
    """Renew an OAuth credential's access token with its refresh token.

    ``rejected``: the access token an upstream just answered 401 to; if the stored
    one is already different, another call refreshed it and nothing is sent. When
    another process holds the refresh, waits for it (up to ``REFRESH_WAIT_SECONDS``).
    The HTTP exchange runs on the event loop, never in the database thread.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REFRESH_WAIT_SECONDS
    waited = False
    while True:
        plan = await database_sync_to_async(_refresh_begin)(credential_id, rejected)
        if isinstance(plan, RefreshOutcome):
            return plan
        if plan is not None:
            break
        if loop.time() > deadline:
            return RefreshOutcome("failed", "Another refresh of this credential is taking long.")
        waited = True
        await asyncio.sleep(0.2)
    if waited and rejected is None:
        # Someone refreshed while we waited; ours would only spend a refresh token.
        await database_sync_to_async(_refresh_release)(plan)
        return RefreshOutcome("refreshed")
    try:
        token = await upstream_oauth.token_refresh(
            plan.token_endpoint,
            registration=plan.registration,
            refresh_token=plan.refresh_token,
            resource=plan.resource,
            scope=plan.scope or None,
            timeout=plan.timeout,
        )
    except upstream_oauth.TokenRefused as error:
        if error.permanent:
            return await database_sync_to_async(_refresh_refused)(plan, error)
        await database_sync_to_async(_refresh_release)(plan)
        return RefreshOutcome("failed", f"The authorization server answered {error.error}.")
    except upstream_oauth.UpstreamOAuthError as error:
        await database_sync_to_async(_refresh_release)(plan)
        logger.warning("Refreshing upstream credential %s failed: %s", credential_id, error.message)
        return RefreshOutcome("failed", error.message)
    except BaseException:
        await database_sync_to_async(_refresh_release)(plan)
        raise
    return await database_sync_to_async(_refresh_store)(plan, token)


def upstream_oauth_flows_expired_delete() -> int:
    """Forget sign-ins that were started and never came back."""
    deleted, _ = UpstreamOAuthFlow.objects.filter(expires_at__lt=timezone.now()).delete()
    return deleted


def credentials_refresh_due(*, limit: int = 500) -> list[str]:
    """Ids of valid OAuth credentials whose access token expires within the refresh margin."""
    now = timezone.now()
    due = UpstreamCredential.objects.filter(
        kind=CredentialKind.OAUTH,
        state=CredentialState.VALID,
        expires_at__isnull=False,
        expires_at__lte=now + refresh_margin(),
    ).filter(Q(refresh_claimed_until__isnull=True) | Q(refresh_claimed_until__lt=now))
    return [str(pk) for pk in due.order_by("expires_at").values_list("pk", flat=True)[:limit]]


# --- what calls use ------------------------------------------------------------------------


def needs_credential_message(connection: Connection) -> str:
    how = "sign in to it" if connection.is_oauth else "add your token"
    return (
        f"The server {connection.name!r} needs your own credential: {how} on the "
        f"My connections page, then call again: {my_connections_url()}"
    )


def needs_reauth_message(connection: Connection, *, shared: bool) -> str:
    if shared:
        return (
            f"The gateway's sign-in to the server {connection.name!r} has expired or was "
            "revoked: an admin must connect it again on the connection's page."
        )
    return (
        f"Your sign-in to the server {connection.name!r} has expired or was revoked: sign in "
        f"again on the My connections page, then call again: {my_connections_url()}"
    )


def credential_for_call(
    *, connection: Connection, user_id: int | None
) -> UpstreamCredential | None:
    """The credential a call to this connection uses for this user, or None (the connection's
    own bearer token or no authentication applies).

    Raises ``UpstreamError`` (``needs_credential``, ``needs_reauth`` or ``credential``)
    with a message for the person the client acts for.
    """
    if not connection.is_personal and not connection.is_oauth:
        return None
    if connection.is_personal and user_id is None:
        raise UpstreamError(
            "needs_credential",
            f"The server {connection.name!r} uses personal credentials, and this call acts "
            "for nobody in particular.",
        )
    credential = credential_get(
        connection=connection, user_id=user_id if connection.is_personal else None
    )
    shared = not connection.is_personal
    if credential is None:
        if shared:
            raise UpstreamError(
                "needs_credential",
                f"The server {connection.name!r} is not connected yet: an admin must sign in "
                "to it on the connection's page.",
            )
        raise UpstreamError("needs_credential", needs_credential_message(connection))
    if credential.unreadable:
        raise UpstreamError(
            "credential",
            "The stored credential cannot be decrypted with the configured encryption keys.",
        )
    if credential.state == CredentialState.NEEDS_REAUTH:
        raise UpstreamError("needs_reauth", needs_reauth_message(connection, shared=shared))
    expected = CredentialKind.OAUTH if connection.is_oauth else CredentialKind.TOKEN
    if credential.kind != expected:
        # The connection's authentication changed since the credential was stored.
        raise UpstreamError(
            "needs_credential" if not shared else "needs_reauth",
            needs_credential_message(connection)
            if not shared
            else needs_reauth_message(connection, shared=True),
        )
    return credential


def credential_refresh_sync(credential_id: str) -> RefreshOutcome:
    """``credential_refresh`` for synchronous callers (Celery tasks, health checks)."""
    return async_to_sync(credential_refresh)(credential_id)


# --- signing in to an upstream's authorization server ---------------------------------------


def oauth_redirect_uri() -> str:
    """Where upstream authorization servers send the browser back (one URL for all)."""
    return settings.GATEWAY_PUBLIC_URL.rstrip("/") + reverse("upstream-oauth-callback")


def oauth_client_id_url() -> str:
    """The gateway's client ID metadata document URL, its ``client_id`` where CIMD is used."""
    return settings.GATEWAY_PUBLIC_URL.rstrip("/") + reverse("upstream-oauth-client")


def _client_name() -> str:
    host = urlsplit(settings.GATEWAY_PUBLIC_URL).netloc
    return f"MCP Gateway ({host})"


def oauth_client_document() -> dict[str, Any]:
    """The gateway's client ID metadata document: the same for every upstream."""
    return upstream_oauth.client_metadata_document(
        client_id=oauth_client_id_url(),
        redirect_uri=oauth_redirect_uri(),
        name=_client_name(),
        uri=settings.GATEWAY_PUBLIC_URL.rstrip("/"),
    )


class SignInError(Exception):
    """A sign-in cannot start or finish; ``message`` is for the person signing in."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _registration_for(
    *, connection: Connection, discovery: upstream_oauth.Discovery, actor: Actor
) -> upstream_oauth.ClientRegistration:
    """The gateway's client at the connection's authorization server, registering if needed.

    An id an admin entered comes first (the MCP specification's order:
    pre-registered, then a client ID metadata document where the server supports
    it, then dynamic registration). A registration made with another issuer is
    replaced: credentials are bound to the server that issued them.
    """
    current = upstream_oauth.ClientRegistration.from_json(connection.oauth_client)
    supported = discovery.metadata.token_endpoint_auth_methods_supported
    if current is not None and current.method == "manual":
        method = current.token_endpoint_auth_method
        stored = connection.oauth_client if isinstance(connection.oauth_client, dict) else {}
        if not stored.get("token_endpoint_auth_method"):
            if current.client_secret is None:
                method = "none"
            elif supported is None or "client_secret_basic" in supported:
                method = "client_secret_basic"
            else:
                method = "client_secret_post"
        chosen = upstream_oauth.ClientRegistration(
            method="manual",
            client_id=current.client_id,
            client_secret=current.client_secret,
            token_endpoint_auth_method=method,
            issuer=discovery.issuer,
        )
        if chosen != current:
            connection.oauth_client = chosen.as_json()
            connection.save(update_fields=["oauth_client", "updated_at"])
        return chosen
    client_id_url = oauth_client_id_url()
    if (
        current is not None
        and upstream_oauth.issuers_match(current.issuer, discovery.issuer)
        and (current.method != "cimd" or current.client_id == client_id_url)
    ):
        return current
    cimd_refused = upstream_oauth.cimd_refused(connection.oauth_client)
    use_cimd = (
        not cimd_refused
        and bool(discovery.metadata.client_id_metadata_document_supported)
        and upstream_oauth.cimd_usable(client_id_url)
    )
    if use_cimd and discovery.metadata.registration_endpoint is not None:
        # A server that cannot fetch the document refuses the client id; where it
        # offers dynamic registration, that is used instead (and remembered).
        try:
            cimd_refused = async_to_sync(upstream_oauth.client_id_refused)(
                str(discovery.metadata.authorization_endpoint),
                client_id=client_id_url,
                redirect_uri=oauth_redirect_uri(),
                resource=discovery.resource,
                scope=connection.oauth_scopes or discovery.scope,
                timeout=float(connection.connect_timeout_seconds),
            )
        except upstream_oauth.UpstreamOAuthError as error:
            raise SignInError(error.message) from None
        use_cimd = not cimd_refused
    if use_cimd:
        registration = upstream_oauth.ClientRegistration(
            method="cimd",
            client_id=client_id_url,
            client_secret=None,
            token_endpoint_auth_method="none",
            issuer=discovery.issuer,
        )
    else:
        try:
            registration = async_to_sync(upstream_oauth.register)(
                discovery,
                redirect_uri=oauth_redirect_uri(),
                client_name=_client_name(),
                client_uri=settings.GATEWAY_PUBLIC_URL.rstrip("/"),
                timeout=float(connection.connect_timeout_seconds),
            )
        except upstream_oauth.UpstreamOAuthError as error:
            raise SignInError(error.message) from None
        if cimd_refused:
            registration = dataclasses.replace(registration, cimd_refused=True)
    connection.oauth_client = registration.as_json()
    connection.save(update_fields=["oauth_client", "updated_at"])
    if registration.client_secret:
        secret_values_register([registration.client_secret])
    _record(
        connection=connection,
        change="oauth_client_registered",
        actor=actor,
        details={"registration": registration.method, "cimd_refused": cimd_refused},
    )
    return registration


def oauth_sign_in_start(
    *, connection: Connection, user: Any, shared: bool, return_to: str = ""
) -> str:
    """Begin a sign-in to the connection's authorization server; the URL to send the browser to.

    ``shared``: an admin connects the connection's one shared credential; else the
    user connects their own (personal mode). Discovery and registration run here,
    so a misconfigured server is reported at once. The ``state`` sent along is
    single-use, bound to this user and expires after ``GATEWAY_UPSTREAM_OAUTH_FLOW_SECONDS``.
    """
    if not connection.is_oauth:
        raise SignInError(f"“{connection.name}” does not use OAuth.")
    if shared == connection.is_personal:
        raise SignInError(
            f"“{connection.name}” uses personal credentials: each user signs in on My connections."
            if shared
            else f"“{connection.name}” uses one shared sign-in, made by an admin."
        )
    timeout = float(connection.connect_timeout_seconds)
    try:
        discovery = async_to_sync(upstream_oauth.discover)(connection.server_url, timeout=timeout)
    except upstream_oauth.UpstreamOAuthError as error:
        raise SignInError(error.message) from None
    registration = _registration_for(connection=connection, discovery=discovery, actor=user)
    scope = connection.oauth_scopes or discovery.scope
    pkce = upstream_oauth.pkce()
    state = secrets.token_urlsafe(32)
    redirect_uri = oauth_redirect_uri()
    UpstreamOAuthFlow.objects.create(
        state_digest=_digest(state),
        connection=connection,
        user=user,
        shared=shared,
        secret={"code_verifier": pkce.code_verifier},
        issuer=discovery.issuer,
        token_endpoint=str(discovery.metadata.token_endpoint),
        redirect_uri=redirect_uri,
        resource=discovery.resource,
        scope=scope or "",
        iss_required=bool(discovery.metadata.authorization_response_iss_parameter_supported),
        return_to=return_to[:2000],
        expires_at=timezone.now() + timedelta(seconds=settings.GATEWAY_UPSTREAM_OAUTH_FLOW_SECONDS),
    )
    return upstream_oauth.authorization_url(
        str(discovery.metadata.authorization_endpoint),
        client_id=registration.client_id,
        redirect_uri=redirect_uri,
        state=state,
        code_challenge=pkce.code_challenge,
        resource=discovery.resource,
        scope=scope,
    )


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


@dataclass(frozen=True)
class SignInResult:
    connection: Connection
    shared: bool
    return_to: str


def oauth_sign_in_finish(*, user: Any, params: dict[str, str]) -> SignInResult:
    """Complete a sign-in from the authorization server's redirect back to the gateway.

    The ``state`` must name a sign-in this same user started, not yet used and not
    expired; it is used up whatever happens next. ``iss`` (RFC 9207) must be the
    issuer the sign-in went to. The code is exchanged with its PKCE verifier and
    the tokens stored encrypted.
    """
    state = params.get("state") or ""
    if not state:
        raise SignInError("The answer of the server's sign-in has no state: start again.")
    with transaction.atomic():
        flow = (
            UpstreamOAuthFlow.objects.select_related("connection")
            .filter(state_digest=_digest(state))
            .first()
        )
        # Deleted before anything else: a state is good for one try, even a failed one.
        used = flow is not None and UpstreamOAuthFlow.objects.filter(pk=flow.pk).delete()[0] == 1
    if flow is None or not used:
        raise SignInError("This sign-in was already completed or has expired: start again.")
    if flow.user_id != user.pk:
        raise SignInError("This sign-in was started by someone else: start your own.")
    if flow.expires_at < timezone.now():
        raise SignInError("This sign-in took too long and expired: start again.")
    connection = flow.connection
    if params.get("error"):
        code = params["error"] if params["error"].replace("_", "").isalnum() else "error"
        raise SignInError(f"The sign-in to “{connection.name}” was not completed ({code[:64]}).")
    iss = params.get("iss")
    if iss is not None and not upstream_oauth.issuers_match(iss, flow.issuer):
        raise SignInError("The answer came from another authorization server than expected.")
    if iss is None and flow.iss_required:
        raise SignInError("The authorization server's answer lacks its issuer (iss): start again.")
    code = params.get("code") or ""
    if not code:
        raise SignInError("The answer of the server's sign-in has no code: start again.")
    registration = upstream_oauth.ClientRegistration.from_json(connection.oauth_client)
    secret = flow.secret if isinstance(flow.secret, dict) else {}
    if registration is None or not isinstance(secret.get("code_verifier"), str):
        raise SignInError("The gateway's registration changed during the sign-in: start again.")
    try:
        token = async_to_sync(upstream_oauth.code_exchange)(
            flow.token_endpoint,
            registration=registration,
            code=code,
            code_verifier=secret["code_verifier"],
            redirect_uri=flow.redirect_uri,
            resource=flow.resource,
            timeout=float(connection.connect_timeout_seconds),
        )
    except upstream_oauth.TokenRefused as error:
        if error.error == "invalid_client" and registration.method in ("dcr", "cimd"):
            # The server forgot the gateway's registration, or could not fetch its client
            # ID metadata document: register again next time, dynamically after a CIMD.
            refused = registration.method == "cimd" or registration.cimd_refused
            Connection.objects.filter(pk=connection.pk).update(
                oauth_client={"cimd_refused": True} if refused else None
            )
        raise SignInError(
            f"The server refused the sign-in's code ({error.error}): start again."
        ) from None
    except upstream_oauth.UpstreamOAuthError as error:
        raise SignInError(error.message) from None
    oauth_credential_store(
        connection=connection,
        user=None if flow.shared else user,
        token=token,
        token_endpoint=flow.token_endpoint,
        resource=flow.resource,
        issuer=flow.issuer,
        actor=user,
    )
    return SignInResult(connection=connection, shared=flow.shared, return_to=flow.return_to)
