"""Django admin: a read-only view for operators.

Changes go through the gateway's pages or the API, so the same validation runs
and connected clients hear about them (``endpoint.changed``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from endpoints.models import Endpoint, EndpointConnection, EndpointToggle


class _ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EndpointConnectionInline(_ReadOnly, admin.TabularInline[EndpointConnection, Endpoint]):
    model = EndpointConnection
    extra = 0


@admin.register(Endpoint)
class EndpointAdmin(_ReadOnly, admin.ModelAdmin[Endpoint]):
    list_display = ["name", "slug", "organization", "access", "prefix_names", "updated_at"]
    list_filter = ["access", "prefix_names"]
    search_fields = ["name", "slug"]
    inlines = [EndpointConnectionInline]


@admin.register(EndpointToggle)
class EndpointToggleAdmin(_ReadOnly, admin.ModelAdmin[EndpointToggle]):
    list_display = ["endpoint", "entry", "enabled", "alias", "updated_at"]
    list_filter = ["enabled"]
