"""URL routes of the web side (everything but the MCP transport, which asgi.py routes)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from oauth2_provider import views as dot_views

from audit import api as audit_api
from audit import views as audit_views
from connections import api as connections_api
from connections import views as connections_views
from endpoints import api as endpoints_api
from endpoints import views as endpoints_views
from gateway_project.api_errors import api_not_found
from oauth import authorization_views as authz
from oauth import views as oauth_views

api_urlpatterns = [
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path(
        "api/mcp-connections",
        connections_api.ConnectionListApi.as_view(),
        name="api-connection-list",
    ),
    path(
        "api/mcp-connections/<str:connection_id>",
        connections_api.ConnectionDetailApi.as_view(),
        name="api-connection-detail",
    ),
    path(
        "api/mcp-connections/<str:connection_id>/health-check",
        connections_api.ConnectionHealthCheckApi.as_view(),
        name="api-connection-health-check",
    ),
    path(
        "api/mcp-connections/<str:connection_id>/catalog",
        connections_api.ConnectionCatalogApi.as_view(),
        name="api-connection-catalog",
    ),
    path(
        "api/mcp-connections/<str:connection_id>/credentials",
        connections_api.ConnectionCredentialsApi.as_view(),
        name="api-connection-credentials",
    ),
    path(
        "api/mcp-connections/<str:connection_id>/credentials/me",
        connections_api.MyCredentialApi.as_view(),
        name="api-connection-my-credential",
    ),
    path("api/mcp-endpoints", endpoints_api.EndpointListApi.as_view(), name="api-endpoint-list"),
    path(
        "api/mcp-endpoints/<str:endpoint_id>",
        endpoints_api.EndpointDetailApi.as_view(),
        name="api-endpoint-detail",
    ),
    path(
        "api/mcp-endpoints/<str:endpoint_id>/tools",
        endpoints_api.EndpointToolsApi.as_view(),
        name="api-endpoint-tools",
    ),
    path(
        "api/mcp-endpoints/<str:endpoint_id>/prompts",
        endpoints_api.EndpointPromptsApi.as_view(),
        name="api-endpoint-prompts",
    ),
    path(
        "api/mcp-endpoints/<str:endpoint_id>/resources",
        endpoints_api.EndpointResourcesApi.as_view(),
        name="api-endpoint-resources",
    ),
    path(
        "api/mcp-endpoints/<str:endpoint_id>/sessions",
        endpoints_api.EndpointSessionsApi.as_view(),
        name="api-endpoint-sessions",
    ),
    path(
        "api/mcp-endpoints/<str:endpoint_id>/sessions/<str:session_id>",
        endpoints_api.EndpointSessionDetailApi.as_view(),
        name="api-endpoint-session",
    ),
    path("api/audit-logs", audit_api.AuditLogListApi.as_view(), name="api-audit-log-list"),
    path(
        "api/audit-logs/export.<str:fmt>",
        audit_api.AuditLogExportApi.as_view(),
        name="api-audit-log-export",
    ),
    path(
        "api/audit-logs/<str:record_id>",
        audit_api.AuditLogDetailApi.as_view(),
        name="api-audit-log-detail",
    ),
    path("api/audit-policy", audit_api.AuditPolicyApi.as_view(), name="api-audit-policy"),
    path("api/audit-events", audit_api.AuditEventListApi.as_view(), name="api-audit-event-list"),
    re_path(r"^api/", api_not_found),
]

ui_urlpatterns = [
    path("", endpoints_views.dashboard_view, name="dashboard"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("organizations/switch", oauth_views.organization_switch_view, name="organization-switch"),
    path("settings/api-tokens", oauth_views.api_token_list_view, name="api-tokens"),
    path(
        "settings/api-tokens/<str:token_id>/revoke",
        oauth_views.api_token_revoke_view,
        name="api-token-revoke",
    ),
    path("me/connections", connections_views.my_connections_view, name="my-connections"),
    path(
        "me/connections/<str:connection_id>/token",
        connections_views.my_connection_token_view,
        name="my-connection-token",
    ),
    path(
        "me/connections/<str:connection_id>/disconnect",
        connections_views.my_connection_disconnect_view,
        name="my-connection-disconnect",
    ),
    path(
        "me/connections/<str:connection_id>/connect",
        connections_views.my_connection_connect_view,
        name="my-connection-connect",
    ),
    path(
        "connections/oauth/callback",
        connections_views.upstream_oauth_callback_view,
        name="upstream-oauth-callback",
    ),
    path(
        "oauth/upstream-client.json",
        connections_views.upstream_oauth_client_view,
        name="upstream-oauth-client",
    ),
    path("connections/", connections_views.connection_list_view, name="connection-list"),
    path("connections/new", connections_views.connection_create_view, name="connection-create"),
    path(
        "connections/<str:connection_id>",
        connections_views.connection_detail_view,
        name="connection-detail",
    ),
    path(
        "connections/<str:connection_id>/edit",
        connections_views.connection_edit_view,
        name="connection-edit",
    ),
    path(
        "connections/<str:connection_id>/check",
        connections_views.connection_check_view,
        name="connection-check",
    ),
    path(
        "connections/<str:connection_id>/oauth/connect",
        connections_views.connection_oauth_connect_view,
        name="connection-oauth-connect",
    ),
    path(
        "connections/<str:connection_id>/oauth/disconnect",
        connections_views.connection_oauth_disconnect_view,
        name="connection-oauth-disconnect",
    ),
    path(
        "connections/<str:connection_id>/delete",
        connections_views.connection_delete_view,
        name="connection-delete",
    ),
    path("endpoints/", endpoints_views.endpoint_list_view, name="endpoint-list"),
    path("endpoints/new", endpoints_views.endpoint_create_view, name="endpoint-create"),
    path(
        "endpoints/<str:endpoint_id>", endpoints_views.endpoint_detail_view, name="endpoint-detail"
    ),
    path(
        "endpoints/<str:endpoint_id>/edit",
        endpoints_views.endpoint_edit_view,
        name="endpoint-edit",
    ),
    path(
        "endpoints/<str:endpoint_id>/delete",
        endpoints_views.endpoint_delete_view,
        name="endpoint-delete",
    ),
    path(
        "endpoints/<str:endpoint_id>/entries/bulk",
        endpoints_views.endpoint_entries_bulk_view,
        name="endpoint-entries-bulk",
    ),
    path(
        "endpoints/<str:endpoint_id>/entries/<str:entry_id>",
        endpoints_views.endpoint_entry_view,
        name="endpoint-entry",
    ),
    path(
        "endpoints/<str:endpoint_id>/entries/<str:entry_id>/toggle",
        endpoints_views.endpoint_entry_toggle_view,
        name="endpoint-entry-toggle",
    ),
    path(
        "endpoints/<str:endpoint_id>/entries/<str:entry_id>/review",
        endpoints_views.endpoint_entry_review_view,
        name="endpoint-entry-review",
    ),
    path(
        "endpoints/<str:endpoint_id>/sessions",
        endpoints_views.endpoint_sessions_view,
        name="endpoint-sessions",
    ),
    path(
        "endpoints/<str:endpoint_id>/sessions/<str:session_id>/revoke",
        endpoints_views.endpoint_session_revoke_view,
        name="endpoint-session-revoke",
    ),
    path("activity/", audit_views.activity_list_view, name="activity"),
    path("activity/retention", audit_views.activity_retention_view, name="activity-retention"),
    path("activity/changes", audit_views.activity_changes_view, name="activity-changes"),
    path("activity/export.<str:fmt>", audit_views.activity_export_view, name="activity-export"),
    path("activity/<str:record_id>", audit_views.activity_detail_view, name="activity-detail"),
    path("django-admin/", admin.site.urls),
]

# The authorization server. DOT's views resolve each other as "oauth2_provider:<name>",
# so the routes keep that namespace; /o/authorize/ is the gateway's consent page.
_dot_urlpatterns = [
    path("authorize/", authz.ConsentView.as_view(), name="authorize"),
    path("token/", dot_views.TokenView.as_view(), name="token"),
    path("revoke_token/", dot_views.RevokeTokenView.as_view(), name="revoke-token"),
    path("register/", authz.RegistrationView.as_view(), name="dcr-register"),
    path(
        "register/<str:client_id>/",
        dot_views.DynamicClientRegistrationManagementView.as_view(),
        name="dcr-register-management",
    ),
]
_as_metadata = dot_views.OAuthServerMetadataView.as_view()
_resource_metadata = authz.ProtectedResourceMetadataView.as_view()
oauth_urlpatterns = [
    path("o/", include((_dot_urlpatterns, "oauth2_provider"))),
    # One issuer (the gateway's root), published wherever clients look for it: RFC 8414
    # at the root and path-inserted with an endpoint's path, OpenID discovery, and the
    # 2025-03-26 fallbacks at the root.
    path(".well-known/oauth-authorization-server", _as_metadata),
    path(".well-known/oauth-authorization-server/<path:issuer_path>", _as_metadata),
    path(".well-known/openid-configuration", _as_metadata),
    path(".well-known/openid-configuration/<path:issuer_path>", _as_metadata),
    path("mcp/<slug:slug>/.well-known/openid-configuration", _as_metadata),
    path("mcp/<slug:slug>/.well-known/oauth-authorization-server", _as_metadata),
    path(".well-known/oauth-protected-resource/mcp/<slug:slug>", _resource_metadata),
    path(".well-known/oauth-protected-resource/mcp", _resource_metadata),
    path("authorize", authz.ConsentView.as_view()),
    path("token", dot_views.TokenView.as_view()),
    path("register", authz.RegistrationView.as_view()),
]

urlpatterns = oauth_urlpatterns + api_urlpatterns + ui_urlpatterns

# JSON errors on the paths machines call, Django's pages elsewhere (api_errors.py).
handler400 = "gateway_project.api_errors.handler400"
handler403 = "gateway_project.api_errors.handler403"
handler404 = "gateway_project.api_errors.handler404"
handler500 = "gateway_project.api_errors.handler500"
