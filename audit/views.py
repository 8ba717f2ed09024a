"""The Activity pages: the list with filters, one record, the changes, and exports."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from audit import selectors
from audit.exports import export_response
from audit.services import audit_policy_set
from oauth.decorators import membership_required


def _filters(request: HttpRequest) -> dict[str, str]:
    return {key: request.GET.get(key, "") for key in selectors.FILTERS}


@membership_required()
@require_GET
def activity_list_view(request: HttpRequest) -> HttpResponse:
    membership = request.membership  # type: ignore[attr-defined]
    filters = _filters(request)
    error = None
    try:
        page = selectors.audit_record_page(
            membership=membership, filters=filters, cursor=request.GET.get("cursor") or None
        )
    except selectors.FilterError as failure:
        error = f"{failure.field}: {failure}"
        page = selectors.Page(items=[], next_cursor=None)
    query = request.GET.copy()
    query.pop("cursor", None)
    return render(
        request,
        "audit/list.html",
        {
            "page": page,
            "filters": filters,
            "choices": selectors.audit_filter_choices(membership=membership),
            "sees_all": selectors.audit_sees_all(membership),
            "query": query.urlencode(),
            "error": error,
            "retention_days": selectors.audit_retention_days(organization=membership.organization),
            "quarantine": selectors.audit_quarantine_summary(membership=membership),
        },
        status=400 if error else 200,
    )


@membership_required()
@require_GET
def activity_detail_view(request: HttpRequest, record_id: str) -> HttpResponse:
    record = selectors.audit_record_get(
        membership=request.membership,  # type: ignore[attr-defined]
        record_id=record_id,
    )
    if record is None:
        raise Http404("Record not found")
    return render(
        request,
        "audit/detail.html",
        {
            "record": record,
            "sees_all": selectors.audit_sees_all(request.membership),  # type: ignore[attr-defined]
            "arguments": selectors.record_payload(record.arguments, record.arguments_truncated),
            "result": selectors.record_payload(record.result, record.result_truncated),
        },
    )


@membership_required()
@require_GET
def activity_export_view(request: HttpRequest, fmt: str) -> HttpResponse:
    if fmt not in ("jsonl", "csv"):
        raise Http404("Unknown format")
    try:
        rows = selectors.audit_record_export_rows(
            membership=request.membership,  # type: ignore[attr-defined]
            filters=_filters(request),
        )
    except selectors.FilterError as failure:
        return HttpResponse(f"{failure.field}: {failure}", status=400, content_type="text/plain")
    # A streamed download: StreamingHttpResponse stands in for HttpResponse here.
    return export_response(rows, fmt)  # type: ignore[return-value]


@membership_required()
@require_GET
def activity_changes_view(request: HttpRequest) -> HttpResponse:
    membership = request.membership  # type: ignore[attr-defined]
    return render(
        request,
        "audit/changes.html",
        {
            "events": selectors.management_event_list(membership=membership),
            "sees_all": selectors.audit_sees_all(membership),
        },
    )


@membership_required(admin=True)
@require_POST
def activity_retention_view(request: HttpRequest) -> HttpResponse:
    """Admins set how many days records are kept."""
    try:
        policy = audit_policy_set(
            organization=request.membership.organization,  # type: ignore[attr-defined]
            retention_days=request.POST.get("retention_days"),
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Activity is now kept for {policy.retention_days} days.")
    return redirect("activity")
