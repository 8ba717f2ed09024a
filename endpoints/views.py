"""The dashboard: what the organisation has at a glance."""

from __future__ import annotations

from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from connections.models import ConnectionStatus
from connections.selectors import connection_list
from oauth.decorators import membership_required


@membership_required()
def dashboard_view(request: HttpRequest) -> HttpResponse:
    connections = connection_list(
        organization=request.membership.organization  # type: ignore[attr-defined]
    )
    counts = connections.aggregate(
        total=Count("pk"),
        active=Count("pk", filter=Q(status=ConnectionStatus.ACTIVE)),
        error=Count("pk", filter=Q(status=ConnectionStatus.ERROR)),
        unknown=Count("pk", filter=Q(status=ConnectionStatus.UNKNOWN)),
    )
    return render(
        request,
        "dashboard.html",
        {"counts": counts, "recent": connections.order_by("-updated_at")[:5]},
    )
