"""The shapes of the credentials this gateway issues, so they can be recognised anywhere.

A token the gateway issued can turn up where it must not be kept: a client types
it into a tool's arguments, an upstream echoes it in a result. The activity log
redacts token-shaped strings (``audit.redaction``), and a random string without a
shape cannot be told from any other text. So every credential the gateway issues
starts with a prefix of its own:

- ``gwt_``: API tokens (``oauth.services``);
- ``gwto_``: OAuth access tokens, ``gwtr_``: OAuth refresh tokens (made here,
  named by ``ACCESS_TOKEN_GENERATOR`` / ``REFRESH_TOKEN_GENERATOR`` in the
  django-oauth-toolkit settings).

Each is followed by 32 random bytes, URL-safe base64 (43 characters). All three
begin with ``gwt`` so that finding them costs the log one substring test, and
only an API token begins with ``gwt_`` (which is how a bearer token's kind is told).
"""

from __future__ import annotations

import secrets
from typing import Any

API_TOKEN_PREFIX = "gwt_"
OAUTH_ACCESS_TOKEN_PREFIX = "gwto_"
OAUTH_REFRESH_TOKEN_PREFIX = "gwtr_"
ISSUED_TOKEN_PREFIXES = (API_TOKEN_PREFIX, OAUTH_ACCESS_TOKEN_PREFIX, OAUTH_REFRESH_TOKEN_PREFIX)


def oauth_access_token_generate(request: Any) -> str:
    """A new OAuth access token (oauthlib calls this with the token request)."""
    return OAUTH_ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)


def oauth_refresh_token_generate(request: Any) -> str:
    """A new OAuth refresh token (oauthlib calls this with the token request)."""
    return OAUTH_REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
