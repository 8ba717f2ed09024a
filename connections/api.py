"""REST API of connections: ``/api/mcp-connections``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from connections import selectors, services
from connections.models import AuthType, CatalogEntry, CatalogKind, Connection, Transport
from gateway_project.api_errors import error_response, request_body_object
from oauth.permissions import IsAdminOrReadOnly, api_membership

NOT_FOUND = "MCP connection not found"


class ErrorSerializer(serializers.Serializer[Any]):
    error = serializers.CharField()
    details = serializers.DictField(required=False)


class ConnectionOutSerializer(serializers.ModelSerializer[Connection]):
    """A connection as the API shows it: the credential only as set / not set.

    A stdio server shows its ``command`` and ``args`` and the names of its
    environment variables, never their values.
    """

    tenantId = serializers.UUIDField(source="organization_id", read_only=True)
    serverUrl = serializers.CharField(source="server_url")
    authType = serializers.CharField(source="auth_type")
    lastHealthCheckAt = serializers.DateTimeField(source="last_health_check_at", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")
    tokenSet = serializers.BooleanField(source="token_is_set")
    headersSet = serializers.BooleanField(source="headers_are_set")
    args = serializers.ListField(child=serializers.CharField())
    envSet = serializers.BooleanField(source="env_is_set")
    envNames = serializers.ListField(source="env_names", child=serializers.CharField())
    serverName = serializers.CharField(source="server_name")
    serverVersion = serializers.CharField(source="server_version")
    protocolVersion = serializers.CharField(source="protocol_version")
    serverInstructions = serializers.CharField(source="server_instructions")
    lastCheckError = serializers.CharField(source="last_check_error")
    lastCheckLatencyMs = serializers.IntegerField(source="last_check_latency_ms", allow_null=True)

    class Meta:
        model = Connection
        fields = [
            "id",
            "tenantId",
            "name",
            "slug",
            "serverUrl",
            "transport",
            "command",
            "args",
            "authType",
            "status",
            "instructions",
            "lastHealthCheckAt",
            "createdAt",
            "updatedAt",
            "tokenSet",
            "headersSet",
            "envSet",
            "envNames",
            "serverName",
            "serverVersion",
            "protocolVersion",
            "serverInstructions",
            "lastCheckError",
            "lastCheckLatencyMs",
        ]
        read_only_fields = fields


class ConnectionInSerializer(serializers.Serializer[Any]):
    """The writable fields; ``token``, ``headers`` and ``env`` are write-only secrets.

    Types are checked here; the rules (URL shape, unique names, bearer needs a
    token, stdio only when the operator allows it) live in ``connections.services``
    so the UI applies the same ones.
    """

    name = serializers.CharField(max_length=services.NAME_MAX, trim_whitespace=True)
    slug = serializers.CharField(max_length=services.SLUG_MAX, required=False, allow_blank=True)
    serverUrl = serializers.CharField(
        max_length=services.URL_MAX, required=False, allow_blank=True, allow_null=True
    )
    transport = serializers.ChoiceField(choices=Transport.choices, required=False)
    authType = serializers.ChoiceField(choices=AuthType.choices, required=False)
    token = serializers.CharField(
        write_only=True, required=False, allow_blank=True, allow_null=True, trim_whitespace=True
    )
    headers = serializers.DictField(
        child=serializers.CharField(allow_blank=True),
        write_only=True,
        required=False,
        allow_null=True,
    )
    instructions = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=services.INSTRUCTIONS_MAX
    )
    command = serializers.CharField(
        max_length=services.COMMAND_MAX, required=False, allow_blank=True, allow_null=True
    )
    args = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        allow_null=True,
    )
    env = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        write_only=True,
        required=False,
        allow_null=True,
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = (
            sorted(set(self.initial_data) - set(self.fields))
            if isinstance(self.initial_data, dict)
            else []
        )
        if unknown:
            raise serializers.ValidationError({field: ["Unknown field."] for field in unknown})
        return attrs


_FIELD_TO_ARG = {
    "name": "name",
    "slug": "slug",
    "serverUrl": "server_url",
    "transport": "transport",
    "authType": "auth_type",
    "token": "token",
    "headers": "headers",
    "instructions": "instructions",
    "command": "command",
    "args": "args",
    "env": "env",
}


def _service_kwargs(data: dict[str, Any]) -> dict[str, Any]:
    return {_FIELD_TO_ARG[key]: value for key, value in data.items()}


class ConnectionListApi(APIView):
    permission_classes = [IsAdminOrReadOnly]

    @extend_schema(
        operation_id="mcp_connections_list",
        responses={
            200: inline_serializer(
                "ConnectionList", {"connections": ConnectionOutSerializer(many=True)}
            ),
            401: ErrorSerializer,
        },
    )
    def get(self, request: Request) -> Response:
        membership = api_membership(request)
        assert membership is not None
        connections = selectors.connection_list(organization=membership.organization)
        return Response({"connections": ConnectionOutSerializer(connections, many=True).data})

    @extend_schema(
        operation_id="mcp_connections_create",
        request=ConnectionInSerializer,
        responses={201: ConnectionOutSerializer, 400: ErrorSerializer, 403: ErrorSerializer},
    )
    def post(self, request: Request) -> Response:
        membership = api_membership(request)
        assert membership is not None
        body = request_body_object(request)
        if isinstance(body, Response):
            return body
        serializer = ConnectionInSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        connection = services.connection_create(
            organization=membership.organization,
            actor=request.user,
            **_service_kwargs(serializer.validated_data),
        )
        return Response(ConnectionOutSerializer(connection).data, status=201)


class _OneConnectionApi(APIView):
    """Base of the views about one connection, found within the caller's organisation."""

    permission_classes = [IsAdminOrReadOnly]

    def _connection(self, request: Request, connection_id: str) -> Connection | None:
        membership = api_membership(request)
        assert membership is not None
        return selectors.connection_get(
            organization=membership.organization, connection_id=connection_id
        )


class ConnectionDetailApi(_OneConnectionApi):
    @extend_schema(
        operation_id="mcp_connections_retrieve",
        responses={200: ConnectionOutSerializer, 404: ErrorSerializer},
    )
    def get(self, request: Request, connection_id: str) -> Response:
        connection = self._connection(request, connection_id)
        if connection is None:
            return error_response(404, NOT_FOUND)
        return Response(ConnectionOutSerializer(connection).data)

    @extend_schema(
        operation_id="mcp_connections_partial_update",
        request=ConnectionInSerializer(partial=True),
        responses={
            200: ConnectionOutSerializer,
            400: ErrorSerializer,
            403: ErrorSerializer,
            404: ErrorSerializer,
        },
    )
    def patch(self, request: Request, connection_id: str) -> Response:
        connection = self._connection(request, connection_id)
        if connection is None:
            return error_response(404, NOT_FOUND)
        body = request_body_object(request)
        if isinstance(body, Response):
            return body
        serializer = ConnectionInSerializer(data=body, partial=True)
        serializer.is_valid(raise_exception=True)
        connection = services.connection_update(
            connection=connection, actor=request.user, **_service_kwargs(serializer.validated_data)
        )
        return Response(ConnectionOutSerializer(connection).data)

    @extend_schema(
        operation_id="mcp_connections_destroy",
        responses={204: OpenApiResponse(description="Deleted"), 404: ErrorSerializer},
    )
    def delete(self, request: Request, connection_id: str) -> Response:
        connection = self._connection(request, connection_id)
        if connection is None:
            return error_response(404, NOT_FOUND)
        services.connection_delete(connection=connection, actor=request.user)
        return Response(status=204)


class CatalogEntrySerializer(serializers.ModelSerializer[CatalogEntry]):
    """One tool, resource, template or prompt, with the upstream's definition."""

    definitionHash = serializers.CharField(source="definition_hash")
    previousDefinition = serializers.JSONField(source="previous_definition", allow_null=True)

    class Meta:
        model = CatalogEntry
        fields = [
            "key",
            "name",
            "title",
            "description",
            "state",
            "definition",
            "definitionHash",
            "previousDefinition",
        ]
        read_only_fields = fields


class ConnectionHealthCheckApi(_OneConnectionApi):
    @extend_schema(
        operation_id="mcp_connections_health_check",
        request=None,
        responses={200: ConnectionOutSerializer, 403: ErrorSerializer, 404: ErrorSerializer},
    )
    def post(self, request: Request, connection_id: str) -> Response:
        """Check the connection now (and refresh its catalog); answers the updated connection."""
        connection = self._connection(request, connection_id)
        if connection is None:
            return error_response(404, NOT_FOUND)
        services.connection_check_health(connection=connection)
        connection.refresh_from_db()
        return Response(ConnectionOutSerializer(connection).data)


class ConnectionCatalogApi(_OneConnectionApi):
    @extend_schema(
        operation_id="mcp_connections_catalog",
        responses={
            200: inline_serializer(
                "ConnectionCatalog",
                {
                    "tools": CatalogEntrySerializer(many=True),
                    "resources": CatalogEntrySerializer(many=True),
                    "resourceTemplates": CatalogEntrySerializer(many=True),
                    "prompts": CatalogEntrySerializer(many=True),
                },
            ),
            404: ErrorSerializer,
        },
    )
    def get(self, request: Request, connection_id: str) -> Response:
        """What the server offers, as of the last successful check."""
        connection = self._connection(request, connection_id)
        if connection is None:
            return error_response(404, NOT_FOUND)
        grouped = selectors.connection_catalog(connection=connection)
        return Response(
            {
                "tools": CatalogEntrySerializer(grouped[CatalogKind.TOOL], many=True).data,
                "resources": CatalogEntrySerializer(grouped[CatalogKind.RESOURCE], many=True).data,
                "resourceTemplates": CatalogEntrySerializer(
                    grouped[CatalogKind.RESOURCE_TEMPLATE], many=True
                ).data,
                "prompts": CatalogEntrySerializer(grouped[CatalogKind.PROMPT], many=True).data,
            }
        )
