"""REST API authentication: API tokens and the browser session."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.request import Request

from oauth.models import ApiToken
from oauth.services import api_token_authenticate


class ApiTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <API token>``; the token acts for its user in one organisation."""

    keyword = "bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword:
            raise exceptions.AuthenticationFailed(
                "Use the header 'Authorization: Bearer <API token>'."
            )
        raw = raw.strip()
        if not raw:
            raise exceptions.AuthenticationFailed("The bearer token is empty.")
        token = api_token_authenticate(raw=raw)
        if token is None:
            raise exceptions.AuthenticationFailed("The API token is invalid or has been revoked.")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class OrganizationSessionAuthentication(SessionAuthentication):
    """The browser session, with DRF's CSRF check on unsafe methods."""
