"""URL routes of the web side (everything but the MCP transport, which asgi.py routes)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from audit import api as audit_api
from audit import views as audit_views
from connections import api as connections_api
from connections import views as connections_views
from endpoints import api as endpoints_api
from endpoints import views as endpoints_views
from gateway_project.api_errors import api_not_found
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
    path("activity/", audit_views.activity_list_view, name="activity"),
    path("activity/retention", audit_views.activity_retention_view, name="activity-retention"),
    path("activity/changes", audit_views.activity_changes_view, name="activity-changes"),
    path("activity/export.<str:fmt>", audit_views.activity_export_view, name="activity-export"),
    path("activity/<str:record_id>", audit_views.activity_detail_view, name="activity-detail"),
    path("django-admin/", admin.site.urls),
]

urlpatterns = api_urlpatterns + ui_urlpatterns
