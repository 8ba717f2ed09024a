"""The REST API's rate limits, keyed on the client's address as ``client_address`` sees it.

DRF's own throttles read ``X-Forwarded-For`` from anyone (its ``NUM_PROXIES`` is
unset by default), so one client could be a thousand by varying the header.
"""

from __future__ import annotations

from typing import Any

from rest_framework import throttling

from gateway_project.client_address import client_address


class AnonRateThrottle(throttling.AnonRateThrottle):
    """DRF's anonymous rate limit, per client address (trusted proxies only)."""

    def get_ident(self, request: Any) -> str:
        return client_address(request)


class UserRateThrottle(throttling.UserRateThrottle):
    """DRF's per-user rate limit; anonymous requests count per client address."""

    def get_ident(self, request: Any) -> str:
        return client_address(request)
