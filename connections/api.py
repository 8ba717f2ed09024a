"""REST API of connections: ``/api/mcp-connections``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from connections import credentials, selectors, services
from connections.models import (
    AuthType,
    CatalogEntry,
    CatalogKind,
    Connection,
    CredentialMode,
    Transport,
    UpstreamCredential,
)
from gateway_project.api_errors import (
    ErrorSerializer,
    StrictInputSerializer,
    error_response,
    request_body_object,
)
from oauth.permissions import IsAdminOrReadOnly, IsOrganizationMember, api_membership

NOT_FOUND = "MCP connection not found"


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
    credentialMode = serializers.CharField(source="credential_mode")
    oauthClientId = serializers.CharField(source="oauth_client_id", allow_null=True)
    oauthClientSecretSet = serializers.BooleanField(source="oauth_client_secret_is_set")
    oauthRegistration = serializers.CharField(source="oauth_registration", allow_null=True)
    oauthScopes = serializers.CharField(source="oauth_scopes")
    sharedCredentialState = serializers.SerializerMethodField()

    def get_sharedCredentialState(self, connection: Connection) -> str | None:
        """A shared OAuth connection's sign-in: missing, valid, expiring or needs_reauth."""
        if connection.is_personal or not connection.is_oauth:
            return None
        found = credentials.credential_get(connection=connection, user_id=None)
        return "missing" if found is None else credentials.credential_display_state(found)

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
            "credentialMode",
            "oauthClientId",
            "oauthClientSecretSet",
            "oauthRegistration",
            "oauthScopes",
            "sharedCredentialState",
        ]
        read_only_fields = fields


class ConnectionInSerializer(StrictInputSerializer):
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
    credentialMode = serializers.ChoiceField(choices=CredentialMode.choices, required=False)
    oauthClientId = serializers.CharField(
        max_length=services.OAUTH_CLIENT_ID_MAX, required=False, allow_blank=True, allow_null=True
    )
    oauthClientSecret = serializers.CharField(
        max_length=services.OAUTH_CLIENT_SECRET_MAX,
        write_only=True,
        required=False,
        allow_blank=True,
        allow_null=True,
    )
    oauthScopes = serializers.CharField(
        max_length=services.OAUTH_SCOPES_MAX, required=False, allow_blank=True, allow_null=True
    )


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
    "credentialMode": "credential_mode",
    "oauthClientId": "oauth_client_id",
    "oauthClientSecret": "oauth_client_secret",
    "oauthScopes": "oauth_scopes",
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
        services.connection_check_health(connection=connection, user=request.user)
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


# --- credentials ---------------------------------------------------------------------------


class CredentialSerializer(serializers.ModelSerializer[UpstreamCredential]):
    """Who holds a credential for a connection and its state; never the secret."""

    userId = serializers.IntegerField(source="user_id", allow_null=True)
    username = serializers.SerializerMethodField()
    state = serializers.SerializerMethodField()
    stateReason = serializers.CharField(source="state_reason")
    expiresAt = serializers.DateTimeField(source="expires_at", allow_null=True)
    refreshedAt = serializers.DateTimeField(source="refreshed_at", allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    def get_username(self, credential: UpstreamCredential) -> str | None:
        return credential.user.get_username() if credential.user is not None else None

    def get_state(self, credential: UpstreamCredential) -> str:
        """valid, expiring (its access token expires within the refresh margin) or needs_reauth."""
        return credentials.credential_display_state(credential)

    class Meta:
        model = UpstreamCredential
        fields = [
            "id",
            "userId",
            "username",
            "kind",
            "state",
            "stateReason",
            "expiresAt",
            "refreshedAt",
            "createdAt",
            "updatedAt",
        ]
        read_only_fields = fields


class ConnectionCredentialsApi(_OneConnectionApi):
    @extend_schema(
        operation_id="mcp_connections_credentials",
        responses={
            200: inline_serializer(
                "ConnectionCredentials", {"credentials": CredentialSerializer(many=True)}
            ),
            403: ErrorSerializer,
            404: ErrorSerializer,
        },
    )
    def get(self, request: Request, connection_id: str) -> Response:
        """Who has a credential for this server (users' own, and the shared OAuth sign-in with
        ``userId`` null), and its state; admins only. Secrets are never shown."""
        connection = self._connection(request, connection_id)
        if connection is None:
            return error_response(404, NOT_FOUND)
        membership = api_membership(request)
        if membership is None or not membership.is_admin:
            return error_response(403, "Only an organisation admin can see who holds credentials.")
        found = selectors.connection_credentials(connection=connection)
        return Response({"credentials": CredentialSerializer(found, many=True).data})


class MyCredentialInSerializer(StrictInputSerializer):
    token = serializers.CharField(write_only=True, trim_whitespace=True)


MyCredentialOut = inline_serializer(
    "MyCredential",
    {
        "connectionId": serializers.UUIDField(),
        "credentialMode": serializers.CharField(),
        "authType": serializers.CharField(),
        "state": serializers.CharField(allow_null=True),
        "kind": serializers.CharField(allow_null=True),
        "stateReason": serializers.CharField(),
        "expiresAt": serializers.DateTimeField(allow_null=True),
        "updatedAt": serializers.DateTimeField(allow_null=True),
        "connectUrl": serializers.CharField(),
    },
)


class MyCredentialApi(_OneConnectionApi):
    """The caller's own credential for a personal-mode server (any member)."""

    permission_classes = [IsOrganizationMember]

    def _body(self, connection: Connection, user: Any) -> dict[str, Any]:
        found = (
            credentials.credential_get(connection=connection, user_id=user.pk)
            if connection.is_personal
            else None
        )
        state = None
        if connection.is_personal:
            state = "missing" if found is None else credentials.credential_display_state(found)
        return {
            "connectionId": str(connection.pk),
            "credentialMode": connection.credential_mode,
            "authType": connection.auth_type,
            "state": state,
            "kind": found.kind if found is not None else None,
            "stateReason": found.state_reason if found is not None else "",
            "expiresAt": found.expires_at.isoformat() if found and found.expires_at else None,
            "updatedAt": found.updated_at.isoformat() if found is not None else None,
            "connectUrl": credentials.my_connections_url(),
        }

    @extend_schema(
        operation_id="mcp_connections_my_credential",
        responses={200: MyCredentialOut, 404: ErrorSerializer},
    )
    def get(self, request: Request, connection_id: str) -> Response:
        """Whether you have a credential for this server and its state (``state`` null: the
        server uses one shared credential)."""
        connection = self._connection(request, connection_id)
        if connection is None:
            return error_response(404, NOT_FOUND)
        return Response(self._body(connection, request.user))

    @extend_schema(
        operation_id="mcp_connections_my_credential_set",
        request=MyCredentialInSerializer,
        responses={200: MyCredentialOut, 400: ErrorSerializer, 404: ErrorSerializer},
    )
    def put(self, request: Request, connection_id: str) -> Response:
        """Store your own token for a personal-mode bearer server (replacing yours). An OAuth
        server needs a sign-in in the browser, on the page named by ``connectUrl``."""
        connection = self._connection(request, connection_id)
        if connection is None:
            return error_response(404, NOT_FOUND)
        body = request_body_object(request)
        if isinstance(body, Response):
            return body
        serializer = MyCredentialInSerializer(data=body)
        serializer.is_valid(raise_exception=True)
        credentials.personal_token_set(
            connection=connection, user=request.user, token=serializer.validated_data["token"]
        )
        return Response(self._body(connection, request.user))

    @extend_schema(
        operation_id="mcp_connections_my_credential_delete",
        responses={204: OpenApiResponse(description="Removed"), 404: ErrorSerializer},
    )
    def delete(self, request: Request, connection_id: str) -> Response:
        """Forget your own credential for this server."""
        connection = self._connection(request, connection_id)
        if connection is None:
            return error_response(404, NOT_FOUND)
        if not credentials.credential_remove(connection=connection, user=request.user):
            return error_response(404, "You have no credential for this server.")
        return Response(status=204)
