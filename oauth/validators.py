"""django-oauth-toolkit's storage adapter, extended for the gateway's authorizations.

oauthlib does the protocol; this class only decides what is stored and what is
valid. What it adds to DOT's validator:

- the authorization code carries the endpoint and the access duration the user
  chose on the consent page (the view passes them through oauthlib's request);
- exchanging the code creates an ``OAuthAuthorization`` and binds every token
  issued under it, including each rotated refresh token, to that record;
- no access token outlives its authorization, and a refresh token stops working
  when its authorization has expired or was revoked, so the client must ask the
  user again;
- a token request must concern exactly the endpoint the code was issued for;
- a code gets one exchange attempt: a wrong PKCE verifier burns it, and a code
  presented again revokes the authorization it produced;
- codes go only to redirect URIs that are https, loopback http or an app scheme.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2.rfc6749 import errors

from oauth.models import (
    OAuthAccessToken,
    OAuthApplication,
    OAuthAuthorization,
    OAuthGrant,
    OAuthRefreshToken,
    authorization_code_digest,
    redirect_uri_refusal,
)
from oauth.services import oauth_authorization_code_replayed


class GatewayOAuth2Validator(OAuth2Validator):
    """DOT's validator with authorizations bound to one endpoint for a chosen duration."""

    # A client registered before the redirect rules of ``OAuthApplication.clean`` may
    # still list a plain-http remote URI: no code is ever sent there.
    def validate_redirect_uri(
        self, client_id: str, redirect_uri: str, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        if redirect_uri_refusal(redirect_uri) is not None:
            return False
        return bool(
            super().validate_redirect_uri(client_id, redirect_uri, request, *args, **kwargs)
        )

    def get_default_redirect_uri(
        self, client_id: str, request: Any, *args: Any, **kwargs: Any
    ) -> Any:
        uri = super().get_default_redirect_uri(client_id, request, *args, **kwargs)
        return None if uri and redirect_uri_refusal(uri) is not None else uri

    # --- one exchange attempt per code -------------------------------------------------------
    # oauthlib checks the code, then PKCE, then the redirect URI. The code is claimed
    # (a conditional UPDATE that must change one row) before any of that, so only
    # the first attempt can succeed: a wrong verifier burns the code, and a code
    # presented again revokes what it issued (RFC 6749 §4.1.2).

    def validate_code(
        self, client_id: str, code: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        claimed = OAuthGrant.objects.filter(
            code=code, application=client, consumed_at__isnull=True
        ).update(consumed_at=timezone.now())
        if not claimed:
            oauth_authorization_code_replayed(application=client, code=code)
            return False
        return bool(super().validate_code(client_id, code, client, request, *args, **kwargs))

    # DOT's versions of these three read the code's row again and would answer 500
    # if a concurrent replay deleted it in between; then the code is simply invalid.

    def get_code_challenge(self, code: str, request: Any) -> str | None:
        return self._grant(code, request).code_challenge or None

    def get_code_challenge_method(self, code: str, request: Any) -> str | None:
        return self._grant(code, request).code_challenge_method or None

    def confirm_redirect_uri(
        self, client_id: str, code: str, redirect_uri: str, client: Any, *args: Any, **kwargs: Any
    ) -> bool:
        grant = OAuthGrant.objects.filter(code=code, application=client).first()
        return grant is not None and bool(grant.redirect_uri_allowed(redirect_uri))

    def _grant(self, code: str, request: Any) -> OAuthGrant:
        grant = OAuthGrant.objects.filter(code=code, application=request.client).first()
        if grant is None:
            raise errors.InvalidGrantError(request=request)
        return grant

    def _create_authorization_code(self, request: Any, code: Any, expires: Any = None) -> Any:
        grant = super()._create_authorization_code(request, code, expires)
        grant.endpoint_id = getattr(request, "gateway_endpoint_id", None)
        grant.access_seconds = getattr(request, "gateway_access_seconds", None)
        grant.save(update_fields=["endpoint", "access_seconds"])
        return grant

    def validate_refresh_token(
        self, refresh_token: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        if not super().validate_refresh_token(refresh_token, client, request, *args, **kwargs):
            return False
        instance = getattr(request, "refresh_token_instance", None)
        authorization = getattr(instance, "authorization", None)
        return authorization is not None and _is_live(authorization)

    def _save_bearer_token(
        self, token: dict[str, Any], request: Any, *args: Any, **kwargs: Any
    ) -> Any:
        now = timezone.now()
        self._check_and_set_request_resource(request)
        if request.grant_type == "authorization_code":
            authorization = self._authorization_from_grant(request, token, now)
        elif request.grant_type == "refresh_token":
            authorization = request.refresh_token_instance.authorization
        else:  # the server accepts no other grant type; refuse rather than mint unbound tokens
            raise errors.UnsupportedGrantTypeError(request=request)
        if request.resource != [authorization.resource]:
            raise errors.CustomOAuth2Error(
                error="invalid_target",
                description="The token request must name the endpoint the user authorized.",
                request=request,
            )
        remaining = int((authorization.expires_at - now).total_seconds())
        token["expires_in"] = max(1, min(int(token.get("expires_in") or remaining), remaining))
        request.gateway_authorization = authorization
        OAuthApplication.objects.filter(pk=request.client.pk).update(last_used_at=now)
        return super()._save_bearer_token(token, request, *args, **kwargs)

    def _authorization_from_grant(
        self, request: Any, token: dict[str, Any], now: Any
    ) -> OAuthAuthorization:
        # Locked until the tokens are stored: a replay of this code waits for them,
        # then revokes them; one that deleted the row first leaves nothing to issue.
        grant = (
            OAuthGrant.objects.select_for_update(of=("self",))
            .select_related("endpoint")
            .filter(code=request.code, application=request.client)
            .first()
        )
        if grant is None or grant.endpoint is None or not grant.access_seconds:
            raise errors.InvalidGrantError(request=request)
        if len(grant.resource) != 1:
            raise errors.CustomOAuth2Error(
                error="invalid_target",
                description="The authorization must name exactly one MCP endpoint.",
                request=request,
            )
        return OAuthAuthorization.objects.create(
            application=request.client,
            user=request.user,
            endpoint=grant.endpoint,
            resource=grant.resource[0],
            scope=token.get("scope", ""),
            client_name=(request.client.name or "")[:255],
            code_digest=authorization_code_digest(request.code),
            expires_at=now + timedelta(seconds=grant.access_seconds),
        )

    def _create_access_token(
        self, expires: Any, request: Any, token: Any, source_refresh_token: Any = None
    ) -> OAuthAccessToken:
        access_token = super()._create_access_token(expires, request, token, source_refresh_token)
        authorization = getattr(request, "gateway_authorization", None)
        if authorization is not None:
            access_token.authorization = authorization
            access_token.save(update_fields=["authorization"])
        return access_token

    def _create_refresh_token(
        self, request: Any, refresh_token_code: Any, access_token: Any, previous_refresh_token: Any
    ) -> OAuthRefreshToken:
        refresh_token = super()._create_refresh_token(
            request, refresh_token_code, access_token, previous_refresh_token
        )
        authorization = getattr(request, "gateway_authorization", None)
        if authorization is not None:
            refresh_token.authorization = authorization
            refresh_token.save(update_fields=["authorization"])
        return refresh_token


def _is_live(authorization: OAuthAuthorization) -> bool:
    return authorization.revoked_at is None and authorization.expires_at > timezone.now()
