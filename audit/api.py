"""REST API of the activity log: ``/api/audit-logs`` (list, one record, export)."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import selectors
from audit.exports import export_response
from audit.models import AuditRecord, ManagementEvent
from audit.selectors import audit_retention_days
from audit.services import audit_policy_set
from gateway_project.api_errors import ErrorSerializer, error_response, request_body_object
from oauth.permissions import IsAdminOrReadOnly, IsOrganizationMember, api_membership

NOT_FOUND = "Audit record not found"


def _or_blank(schema: dict[str, Any]) -> dict[str, Any]:
    """A filter sent blank is no filter (as in the Activity page's form)."""
    return {"oneOf": [schema, {"type": "string", "maxLength": 0}]}


FILTER_PARAMETERS = [
    OpenApiParameter(
        "endpoint", _or_blank({"type": "string", "format": "uuid"}), description="endpoint id"
    ),
    OpenApiParameter(
        "connection",
        _or_blank({"type": "string", "format": "uuid"}),
        description="connection (server) id",
    ),
    OpenApiParameter("tool", str, description="public tool or prompt name, or resource URI"),
    OpenApiParameter("user", _or_blank({"type": "integer"}), description="user id"),
    OpenApiParameter("client", str, description="OAuth client or API token name"),
    OpenApiParameter(
        "status",
        {"type": "string", "enum": ["success", "tool_error", "error", "refused", ""]},
    ),
    OpenApiParameter("since", _or_blank({"type": "string", "format": "date-time"})),
    OpenApiParameter("until", _or_blank({"type": "string", "format": "date-time"})),
    OpenApiParameter("q", str, description="text in the tool name or the error message"),
]


class AuditRecordSerializer(serializers.ModelSerializer[AuditRecord]):
    """A record as the list shows it (without arguments and result)."""

    tenantId = serializers.UUIDField(source="organization_id")
    endpointId = serializers.UUIDField(source="endpoint_id", allow_null=True)
    endpointName = serializers.CharField(source="endpoint_name")
    connectionId = serializers.UUIDField(source="connection_id", allow_null=True)
    connectionName = serializers.CharField(source="connection_name")
    upstreamName = serializers.CharField(source="upstream_name")
    userId = serializers.IntegerField(source="user_id", allow_null=True)
    tokenKind = serializers.CharField(source="token_kind")
    tokenId = serializers.CharField(source="token_id")
    clientName = serializers.CharField(source="client_name")
    clientSoftware = serializers.CharField(source="client_software")
    sessionId = serializers.CharField(source="session_id")
    protocolVersion = serializers.CharField(source="protocol_version")
    isError = serializers.BooleanField(source="is_error", allow_null=True)
    errorMessage = serializers.CharField(source="error_message")
    httpStatus = serializers.IntegerField(source="http_status", allow_null=True)
    rpcCode = serializers.IntegerField(source="rpc_code", allow_null=True)
    upstreamMs = serializers.FloatField(source="upstream_ms", allow_null=True)
    totalMs = serializers.FloatField(source="total_ms", allow_null=True)
    requestBytes = serializers.IntegerField(source="request_bytes")
    responseBytes = serializers.IntegerField(source="response_bytes")
    piiRedacted = serializers.ListField(source="pii_kinds", child=serializers.CharField())
    secretsRedacted = serializers.BooleanField(source="secrets_redacted")
    textReplaced = serializers.BooleanField(
        source="text_replaced",
        help_text="Some text held NUL or invalid Unicode; it was replaced by U+FFFD.",
    )

    class Meta:
        model = AuditRecord
        fields = [
            "id", "at", "tenantId", "endpointId", "endpointName", "connectionId",
            "connectionName", "method", "name", "upstreamName", "status", "refusal", "userId",
            "username", "tokenKind", "tokenId", "clientName", "clientSoftware", "sessionId",
            "protocolVersion", "isError", "errorMessage", "httpStatus", "rpcCode", "upstreamMs",
            "totalMs", "requestBytes", "responseBytes", "piiRedacted", "secretsRedacted",
            "textReplaced",
        ]  # fmt: skip
        read_only_fields = fields


def _payload(text: str, truncated: bool) -> Any:
    """Stored JSON as JSON; a truncated payload stays the text it was cut to."""
    if not text:
        return None
    if truncated:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


class AuditRecordDetailSerializer(AuditRecordSerializer):
    """A record with its arguments and result (JSON, or the cut text when truncated)."""

    arguments = serializers.SerializerMethodField()
    argumentsTruncated = serializers.BooleanField(source="arguments_truncated")
    result = serializers.SerializerMethodField()
    resultTruncated = serializers.BooleanField(source="result_truncated")
    errorDetail = serializers.CharField(
        source="error_detail",
        help_text="For admins: the precise upstream failure behind an error (may be empty).",
    )

    class Meta(AuditRecordSerializer.Meta):
        fields = [
            *AuditRecordSerializer.Meta.fields,
            "arguments",
            "argumentsTruncated",
            "result",
            "resultTruncated",
            "errorDetail",
        ]
        read_only_fields = fields

    def get_arguments(self, record: AuditRecord) -> Any:
        return _payload(record.arguments, record.arguments_truncated)

    def get_result(self, record: AuditRecord) -> Any:
        return _payload(record.result, record.result_truncated)


class ManagementEventSerializer(serializers.ModelSerializer[ManagementEvent]):
    tenantId = serializers.UUIDField(source="organization_id")
    actorId = serializers.IntegerField(source="actor_id", allow_null=True)
    actorName = serializers.CharField(source="actor_name")
    targetType = serializers.CharField(source="target_type")
    targetId = serializers.CharField(source="target_id")
    targetName = serializers.CharField(source="target_name")

    class Meta:
        model = ManagementEvent
        fields = ["id", "at", "tenantId", "actorId", "actorName", "action", "targetType",
                  "targetId", "targetName", "details"]  # fmt: skip
        read_only_fields = fields


def _quarantine(membership: Any) -> dict[str, Any] | None:
    """Records the log could not store (admins and auditors; None for members)."""
    summary = selectors.audit_quarantine_summary(membership=membership)
    if summary is None:
        return None
    return {
        "records": summary.records,
        "segments": summary.segments,
        "lastAt": summary.last_at.isoformat() if summary.last_at else None,
        "lastReason": summary.last_reason,
    }


def _filters(request: Request) -> dict[str, str]:
    return {key: request.query_params.get(key, "") for key in selectors.FILTERS}


class AuditLogListApi(APIView):
    """Newest first; admins and auditors see the organisation's records, members their own."""

    permission_classes = [IsOrganizationMember]

    @extend_schema(
        operation_id="audit_logs_list",
        parameters=[
            *FILTER_PARAMETERS,
            OpenApiParameter("cursor", str, description="nextCursor of the previous page"),
            OpenApiParameter("limit", int, description="1 to 200 (default 50)"),
        ],
        responses={
            200: inline_serializer(
                "AuditRecordPage",
                {
                    "records": AuditRecordSerializer(many=True),
                    "nextCursor": serializers.CharField(allow_null=True),
                    "quarantine": inline_serializer(
                        "AuditQuarantine",
                        {
                            "records": serializers.IntegerField(),
                            "segments": serializers.IntegerField(),
                            "lastAt": serializers.DateTimeField(allow_null=True),
                            "lastReason": serializers.CharField(),
                        },
                        allow_null=True,
                        help_text="Records that could not be stored and were set aside "
                        "(admins and auditors; null for members).",
                    ),
                },
            ),
            400: ErrorSerializer,
        },
    )
    def get(self, request: Request) -> Response:
        membership = api_membership(request)
        assert membership is not None
        try:
            limit = int(request.query_params.get("limit") or selectors.PAGE_SIZE)
        except ValueError:
            return error_response(400, "Invalid filter.", {"limit": ["Give a number."]})
        try:
            page = selectors.audit_record_page(
                membership=membership,
                filters=_filters(request),
                cursor=request.query_params.get("cursor") or None,
                limit=limit,
            )
        except selectors.FilterError as error:
            return error_response(400, "Invalid filter.", {error.field: [str(error)]})
        return Response(
            {
                "records": AuditRecordSerializer(page.items, many=True).data,
                "nextCursor": page.next_cursor,
                "quarantine": _quarantine(membership),
            }
        )


class AuditLogDetailApi(APIView):
    permission_classes = [IsOrganizationMember]

    @extend_schema(
        operation_id="audit_logs_retrieve",
        responses={200: AuditRecordDetailSerializer, 404: ErrorSerializer},
    )
    def get(self, request: Request, record_id: str) -> Response:
        membership = api_membership(request)
        assert membership is not None
        record = selectors.audit_record_get(membership=membership, record_id=record_id)
        if record is None:
            return error_response(404, NOT_FOUND)
        data = AuditRecordDetailSerializer(record).data
        if not selectors.audit_sees_all(membership):
            data["errorDetail"] = ""  # upstream internals are for admins and auditors
        return Response(data)


class AuditLogExportApi(APIView):
    """The filtered set, streamed as JSON Lines (``export.jsonl``) or CSV (``export.csv``).

    (A path suffix rather than ``?format=``: DRF reserves that parameter.)
    """

    permission_classes = [IsOrganizationMember]

    @extend_schema(
        operation_id="audit_logs_export",
        parameters=[
            OpenApiParameter("fmt", str, OpenApiParameter.PATH, enum=["jsonl", "csv"]),
            *FILTER_PARAMETERS,
        ],
        responses={
            (200, "application/x-ndjson"): OpenApiTypes.BINARY,
            (200, "text/csv"): OpenApiTypes.BINARY,
            400: ErrorSerializer,
            404: ErrorSerializer,
        },
    )
    def get(self, request: Request, fmt: str) -> HttpResponseBase:
        membership = api_membership(request)
        assert membership is not None
        if fmt not in ("jsonl", "csv"):
            return error_response(404, "Unknown export format: use export.jsonl or export.csv.")
        try:
            rows = selectors.audit_record_export_rows(
                membership=membership, filters=_filters(request)
            )
        except selectors.FilterError as error:
            return error_response(400, "Invalid filter.", {error.field: [str(error)]})
        return export_response(rows, fmt)


class AuditEventListApi(APIView):
    """The organisation's latest configuration changes (admins and auditors)."""

    permission_classes = [IsOrganizationMember]

    @extend_schema(
        operation_id="audit_events_list",
        responses={
            200: inline_serializer(
                "ManagementEventList", {"events": ManagementEventSerializer(many=True)}
            )
        },
    )
    def get(self, request: Request) -> Response:
        membership = api_membership(request)
        assert membership is not None
        events = selectors.management_event_list(membership=membership, limit=200)
        return Response({"events": ManagementEventSerializer(events, many=True).data})


class AuditPolicyApi(APIView):
    """How many days the organisation's records are kept (default 90); admins change it."""

    permission_classes = [IsAdminOrReadOnly]

    @extend_schema(
        operation_id="audit_policy_retrieve",
        responses={
            200: inline_serializer("AuditPolicy", {"retentionDays": serializers.IntegerField()})
        },
    )
    def get(self, request: Request) -> Response:
        membership = api_membership(request)
        assert membership is not None
        return Response(
            {"retentionDays": audit_retention_days(organization=membership.organization)}
        )

    @extend_schema(
        operation_id="audit_policy_partial_update",
        request=inline_serializer(
            "AuditPolicyIn",
            {"retentionDays": serializers.IntegerField(min_value=1, max_value=36_500)},
        ),
        responses={
            200: inline_serializer("AuditPolicyOut", {"retentionDays": serializers.IntegerField()}),
            400: ErrorSerializer,
            403: ErrorSerializer,
        },
    )
    def patch(self, request: Request) -> Response:
        membership = api_membership(request)
        assert membership is not None
        body = request_body_object(request)
        if isinstance(body, Response):
            return body
        policy = audit_policy_set(
            organization=membership.organization, retention_days=body.get("retentionDays")
        )
        return Response({"retentionDays": policy.retention_days})
