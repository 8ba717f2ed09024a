"""REST API of endpoints: ``/api/mcp-endpoints`` and the toggles of their tools,
prompts and resources. Thin: types are checked here, rules live in ``endpoints.services``."""

from __future__ import annotations

from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from connections.models import CatalogKind, CatalogState
from endpoints import selectors, services
from endpoints.models import Endpoint, EndpointAccess
from endpoints.selectors import CatalogRow
from gateway_project.api_errors import (
    ErrorSerializer,
    StrictInputSerializer,
    error_response,
    request_body_object,
)
from oauth.models import AccessDuration
from oauth.permissions import IsAdminOrReadOnly, IsOrganizationMember, api_membership

NOT_FOUND = "MCP endpoint not found"


class EndpointOutSerializer(serializers.ModelSerializer[Endpoint]):
    """An endpoint as the API shows it."""

    tenantId = serializers.UUIDField(source="organization_id", read_only=True)
    url = serializers.CharField(read_only=True)
    connectionIds = serializers.SerializerMethodField()
    memberIds = serializers.SerializerMethodField()
    prefixToolNames = serializers.BooleanField(source="prefix_names")
    maxAccessDuration = serializers.IntegerField(source="max_access_seconds")
    piiFilter = serializers.BooleanField(source="pii_filter")
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        model = Endpoint
        fields = [
            "id",
            "tenantId",
            "name",
            "description",
            "slug",
            "url",
            "connectionIds",
            "access",
            "memberIds",
            "prefixToolNames",
            "maxAccessDuration",
            "piiFilter",
            "createdAt",
            "updatedAt",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_connectionIds(self, endpoint: Endpoint) -> list[str]:
        return [str(link.connection_id) for link in endpoint.links.all()]

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_memberIds(self, endpoint: Endpoint) -> list[int]:
        return selectors.endpoint_member_ids(endpoint=endpoint)


class EndpointInSerializer(StrictInputSerializer):
    """The writable fields of an endpoint.

    ``connectionIds`` and ``memberIds`` (user ids) replace the lists when given;
    ``access`` is ``organization`` (every admin and member) or ``members`` (the
    chosen ones; admins always). ``prefixToolNames: false`` serves names bare
    where no other connected server has the same one. ``piiFilter: true`` redacts
    e-mail addresses, phone numbers, SSNs, card numbers and IP addresses in results.
    """

    name = serializers.CharField(max_length=services.NAME_MAX, trim_whitespace=True)
    description = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, max_length=services.DESCRIPTION_MAX
    )
    slug = serializers.CharField(max_length=services.SLUG_MAX, required=False, allow_blank=True)
    connectionIds = serializers.ListField(
        child=serializers.CharField(), required=False, max_length=services.CONNECTIONS_MAX
    )
    access = serializers.ChoiceField(choices=EndpointAccess.choices, required=False)
    memberIds = serializers.ListField(child=serializers.IntegerField(), required=False)
    prefixToolNames = serializers.BooleanField(required=False)
    maxAccessDuration = serializers.ChoiceField(
        choices=AccessDuration.choices,
        required=False,
        help_text="The longest access (seconds) a user may grant an AI client on this endpoint.",
    )
    piiFilter = serializers.BooleanField(required=False)


_FIELD_TO_ARG = {
    "name": "name",
    "description": "description",
    "slug": "slug",
    "connectionIds": "connection_ids",
    "access": "access",
    "memberIds": "member_ids",
    "prefixToolNames": "prefix_names",
    "maxAccessDuration": "max_access_seconds",
    "piiFilter": "pii_filter",
}


def _service_kwargs(data: dict[str, Any]) -> dict[str, Any]:
    return {_FIELD_TO_ARG[key]: value for key, value in data.items()}


class EndpointListApi(APIView):
    permission_classes = [IsAdminOrReadOnly]

    @extend_schema(
        operation_id="mcp_endpoints_list",
        responses={
            200: inline_serializer("EndpointList", {"endpoints": EndpointOutSerializer(many=True)}),
            401: ErrorSerializer,
        },
    )
    def get(self, request: Request) -> Response:
        membership = api_membership(request)
        assert membership is not None
        endpoints = selectors.endpoint_list(organization=membership.organization)
        return Response({"endpoints": EndpointOutSerializer(endpoints, many=True).data})

    @extend_schema(
        operation_id="mcp_endpoints_create",
        request=EndpointInSerializer,
        responses={201: EndpointOutSerializer, 400: ErrorSerializer, 403: ErrorSerializer},
    )
    def post(self, request: Request) -> Response:
        membership = api_membership(request)
        assert membership is not None
        body = request_body_object(request)
        if isinstance(body, Response):
            return body
        serializer = EndpointInSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        endpoint = services.endpoint_create(
            organization=membership.organization,
            actor=request.user,
            **_service_kwargs(serializer.validated_data),
        )
        fresh = selectors.endpoint_get(
            organization=membership.organization, endpoint_id=endpoint.pk
        )
        return Response(EndpointOutSerializer(fresh).data, status=201)


class _OneEndpointApi(APIView):
    """Base of the views about one endpoint, found within the caller's organisation."""

    permission_classes = [IsAdminOrReadOnly]

    def _endpoint(self, request: Request, endpoint_id: str) -> Endpoint | None:
        membership = api_membership(request)
        assert membership is not None
        return selectors.endpoint_get(organization=membership.organization, endpoint_id=endpoint_id)


class EndpointDetailApi(_OneEndpointApi):
    @extend_schema(
        operation_id="mcp_endpoints_retrieve",
        responses={200: EndpointOutSerializer, 404: ErrorSerializer},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = self._endpoint(request, endpoint_id)
        if endpoint is None:
            return error_response(404, NOT_FOUND)
        return Response(EndpointOutSerializer(endpoint).data)

    @extend_schema(
        operation_id="mcp_endpoints_partial_update",
        request=EndpointInSerializer(partial=True),
        responses={
            200: EndpointOutSerializer,
            400: ErrorSerializer,
            403: ErrorSerializer,
            404: ErrorSerializer,
        },
    )
    def patch(self, request: Request, endpoint_id: str) -> Response:
        endpoint = self._endpoint(request, endpoint_id)
        if endpoint is None:
            return error_response(404, NOT_FOUND)
        body = request_body_object(request)
        if isinstance(body, Response):
            return body
        serializer = EndpointInSerializer(data=body, partial=True)
        serializer.is_valid(raise_exception=True)
        services.endpoint_update(
            endpoint=endpoint, actor=request.user, **_service_kwargs(serializer.validated_data)
        )
        return Response(EndpointOutSerializer(self._endpoint(request, endpoint_id)).data)

    @extend_schema(
        operation_id="mcp_endpoints_destroy",
        responses={204: OpenApiResponse(description="Deleted"), 404: ErrorSerializer},
    )
    def delete(self, request: Request, endpoint_id: str) -> Response:
        endpoint = self._endpoint(request, endpoint_id)
        if endpoint is None:
            return error_response(404, NOT_FOUND)
        services.endpoint_delete(endpoint=endpoint, actor=request.user)
        return Response(status=204)


# --- tools, prompts, resources -------------------------------------------------------


class _RowSerializer(serializers.Serializer[Any]):
    connectionId = serializers.UUIDField(source="connection_id")
    connectionName = serializers.CharField(source="connection_name")
    description = serializers.CharField()
    upstreamDescription = serializers.CharField(source="upstream_description")
    enabled = serializers.BooleanField()
    # The catalog's own states, so the schema shares one enum with the connections API.
    state = serializers.ChoiceField(choices=CatalogState.choices)


class ToolRowSerializer(_RowSerializer):
    """A tool (or prompt) of a connected server: its public name, toggle and state.

    ``enabled`` is whether it is served now; ``state`` ``changed`` means its
    definition changed upstream since an admin enabled it, and it is held back
    until one enables it again; ``missing`` means the server no longer lists it.
    """

    upstreamName = serializers.CharField(source="key")
    name = serializers.CharField(source="public_name")
    alias = serializers.CharField(allow_null=True, source="alias_or_none")


class ResourceRowSerializer(_RowSerializer):
    """A resource or resource template of a connected server, under its public URI."""

    type = serializers.SerializerMethodField()
    upstreamUri = serializers.CharField(source="key")
    uri = serializers.CharField(source="public_name")
    name = serializers.CharField(source="upstream_name")

    @extend_schema_field(serializers.ChoiceField(choices=["resource", "template"]))
    def get_type(self, row: CatalogRow) -> str:
        return "template" if row.kind == CatalogKind.RESOURCE_TEMPLATE else "resource"


class _ToolChangeSerializer(serializers.Serializer[Any]):
    """Documentation only: the items are checked by hand to name the failing index."""

    connectionId = serializers.UUIDField()
    upstreamName = serializers.CharField()
    enabled = serializers.BooleanField(required=False)
    alias = serializers.CharField(required=False, allow_null=True)
    description = serializers.CharField(required=False, allow_null=True)


class _ResourceChangeSerializer(serializers.Serializer[Any]):
    """Documentation only, like ``_ToolChangeSerializer``."""

    connectionId = serializers.UUIDField()
    type = serializers.ChoiceField(choices=["resource", "template"])
    upstreamUri = serializers.CharField()
    enabled = serializers.BooleanField(required=False)
    description = serializers.CharField(required=False, allow_null=True)


def _parse_changes(body: dict[str, Any], group: str) -> list[services.CatalogChange]:
    """The changes of a PATCH body, or ``ValidationError`` with keys like ``tools[2].enabled``."""
    errors: dict[str, list[str]] = {}
    for key in sorted(set(body) - {group}):
        errors[key] = ["Unknown field."]
    items = body.get(group)
    if not isinstance(items, list):
        errors[group] = [f'Give "{group}": a list of changes.']
        raise ValidationError(errors)
    is_resources = group == "resources"
    key_field = "upstreamUri" if is_resources else "upstreamName"
    allowed = {"connectionId", key_field, "enabled", "description"} | (
        {"type"} if is_resources else {"alias"}
    )
    changes: list[services.CatalogChange] = []
    for index, item in enumerate(items):
        label = f"{group}[{index}]"
        if not isinstance(item, dict):
            errors[label] = ["Each change must be an object."]
            continue
        problems: dict[str, str] = {key: "Unknown field." for key in set(item) - allowed}
        if not isinstance(item.get("connectionId"), str):
            problems["connectionId"] = "Give the connection's id."
        if not isinstance(item.get(key_field), str) or not item[key_field]:
            problems[key_field] = "Give the upstream " + ("URI." if is_resources else "name.")
        if "enabled" in item and not isinstance(item["enabled"], bool):
            problems["enabled"] = "Give true or false."
        for text_field in ("alias", "description"):
            if text_field in item and not isinstance(item[text_field], str | None):
                problems[text_field] = "Give text or null."
        kind = CatalogKind.PROMPT if group == "prompts" else CatalogKind.TOOL
        if is_resources:
            kind = (
                CatalogKind.RESOURCE_TEMPLATE
                if item.get("type") == "template"
                else CatalogKind.RESOURCE
            )
            if item.get("type") not in ("resource", "template"):
                problems["type"] = 'Give "resource" or "template".'
        if not problems and not ({"enabled", "alias", "description"} & set(item)):
            errors[label] = ["Give enabled, alias or description to change."]
            continue
        for key, message in sorted(problems.items()):
            errors[f"{label}.{key}"] = [message]
        if problems:
            continue
        changes.append(
            services.CatalogChange(
                connection_id=item["connectionId"],
                kind=kind,
                key=item[key_field],
                enabled=item.get("enabled", services.UNSET),
                alias=item.get("alias", services.UNSET),
                description=item.get("description", services.UNSET),
                label=label,
            )
        )
    if errors:
        raise ValidationError(errors)
    return changes


class _EndpointCatalogApi(_OneEndpointApi):
    """``GET``/``PATCH /api/mcp-endpoints/{id}/<group>``: list and change toggles."""

    group: ClassVar[str]
    row_serializer: ClassVar[type[serializers.Serializer[Any]]]

    def _payload(self, endpoint: Endpoint) -> dict[str, Any]:
        rows = selectors.endpoint_catalog_rows(endpoint=endpoint, group=self.group)
        return {self.group: self.row_serializer(rows, many=True).data}

    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = self._endpoint(request, endpoint_id)
        if endpoint is None:
            return error_response(404, NOT_FOUND)
        return Response(self._payload(endpoint))

    def patch(self, request: Request, endpoint_id: str) -> Response:
        endpoint = self._endpoint(request, endpoint_id)
        if endpoint is None:
            return error_response(404, NOT_FOUND)
        body = request_body_object(request)
        if isinstance(body, Response):
            return body
        changes = _parse_changes(body, self.group)
        services.endpoint_catalog_update(endpoint=endpoint, changes=changes, actor=request.user)
        return Response(self._payload(endpoint))


def _catalog_schema(group: str, row: type[_RowSerializer], change: type[Any]) -> Any:
    listing = inline_serializer(f"Endpoint{group.title()}", {group: row(many=True)})
    body = inline_serializer(f"Endpoint{group.title()}Change", {group: change(many=True)})
    example_item: dict[str, Any] = (
        {"connectionId": "…", "type": "resource", "upstreamUri": "catalog://products"}
        if group == "resources"
        else {"connectionId": "…", "upstreamName": "get_order_status", "alias": "order_status"}
    )
    return (
        extend_schema(
            operation_id=f"mcp_endpoints_{group}_list",
            responses={200: listing, 404: ErrorSerializer},
            description=(
                f"The {group} of the endpoint's connected servers, each with its public "
                "name, toggle and state: `ok`, `changed` (changed upstream since it was "
                "enabled: held back until an admin enables it again) or `missing` (no "
                "longer listed upstream; not served)."
            ),
        ),
        extend_schema(
            operation_id=f"mcp_endpoints_{group}_update",
            request=body,
            responses={
                200: listing,
                400: ErrorSerializer,
                403: ErrorSerializer,
                404: ErrorSerializer,
            },
            examples=[
                OpenApiExample(
                    "Enable one",
                    value={group: [{**example_item, "enabled": True}]},
                    request_only=True,
                )
            ],
            description=(
                "Bulk changes, applied all or nothing; an error names the item "
                f"(`{group}[2].enabled`). `enabled: true` approves the current upstream "
                "definition (the review of a `changed` entry); a `missing` entry cannot be "
                "enabled; `null` or an empty string clears an alias or description override."
            ),
        ),
    )


_tools_get, _tools_patch = _catalog_schema("tools", ToolRowSerializer, _ToolChangeSerializer)
_prompts_get, _prompts_patch = _catalog_schema("prompts", ToolRowSerializer, _ToolChangeSerializer)
_resources_get, _resources_patch = _catalog_schema(
    "resources", ResourceRowSerializer, _ResourceChangeSerializer
)


class EndpointToolsApi(_EndpointCatalogApi):
    group = "tools"
    row_serializer = ToolRowSerializer

    @_tools_get
    def get(self, request: Request, endpoint_id: str) -> Response:
        return super().get(request, endpoint_id)

    @_tools_patch
    def patch(self, request: Request, endpoint_id: str) -> Response:
        return super().patch(request, endpoint_id)


class EndpointPromptsApi(_EndpointCatalogApi):
    group = "prompts"
    row_serializer = ToolRowSerializer

    @_prompts_get
    def get(self, request: Request, endpoint_id: str) -> Response:
        return super().get(request, endpoint_id)

    @_prompts_patch
    def patch(self, request: Request, endpoint_id: str) -> Response:
        return super().patch(request, endpoint_id)


class EndpointResourcesApi(_EndpointCatalogApi):
    group = "resources"
    row_serializer = ResourceRowSerializer

    @_resources_get
    def get(self, request: Request, endpoint_id: str) -> Response:
        return super().get(request, endpoint_id)

    @_resources_patch
    def patch(self, request: Request, endpoint_id: str) -> Response:
        return super().patch(request, endpoint_id)


# --- authorized sessions -------------------------------------------------------------


class SessionSerializer(serializers.Serializer[Any]):
    """An authorized session: an OAuth client a user let in, or a personal API token."""

    id = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=["oauth", "api_token"])
    clientName = serializers.CharField(source="client_name")
    userId = serializers.IntegerField(source="user_id")
    username = serializers.CharField()
    grantedAt = serializers.DateTimeField(source="granted_at")
    expiresAt = serializers.DateTimeField(source="expires_at", allow_null=True)
    lastUsedAt = serializers.DateTimeField(source="last_used_at", allow_null=True)
    calls = serializers.IntegerField()


class _EndpointSessionsBase(_OneEndpointApi):
    # Members see and revoke their own sessions; admins everyone's.
    permission_classes = [IsOrganizationMember]


class EndpointSessionsApi(_EndpointSessionsBase):
    @extend_schema(
        operation_id="mcp_endpoints_sessions_list",
        responses={
            200: inline_serializer("SessionList", {"sessions": SessionSerializer(many=True)}),
            404: ErrorSerializer,
        },
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = self._endpoint(request, endpoint_id)
        membership = api_membership(request)
        if endpoint is None or membership is None:
            return error_response(404, NOT_FOUND)
        rows = selectors.endpoint_sessions(endpoint=endpoint, membership=membership)
        return Response({"sessions": SessionSerializer(rows, many=True).data})


class EndpointSessionDetailApi(_EndpointSessionsBase):
    @extend_schema(
        operation_id="mcp_endpoints_sessions_destroy",
        responses={204: OpenApiResponse(description="Revoked"), 404: ErrorSerializer},
    )
    def delete(self, request: Request, endpoint_id: str, session_id: str) -> Response:
        endpoint = self._endpoint(request, endpoint_id)
        membership = api_membership(request)
        if endpoint is None or membership is None:
            return error_response(404, NOT_FOUND)
        if not services.endpoint_session_revoke(
            endpoint=endpoint, membership=membership, session_id=session_id
        ):
            return error_response(404, "Session not found")
        return Response(status=204)
