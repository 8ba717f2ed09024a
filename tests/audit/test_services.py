"""Management events from the services, and retention."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from audit.models import AuditRecord, ManagementEvent
from audit.services import audit_policy_set, audit_retention_apply
from connections import tasks as connection_tasks
from connections.services import connection_create, connection_delete, connection_update
from endpoints.services import endpoint_create, endpoint_delete, endpoint_update
from oauth.models import ApiToken
from oauth.services import api_token_create, api_token_revoke
from tests.audit.factories_audit import make_records


def _actions(org) -> list[tuple[str, str]]:
    return [
        (e.action, e.actor_name)
        for e in ManagementEvent.objects.filter(organization_id=org.pk).order_by("at", "id")
    ]


def test_changes_are_recorded_with_the_acting_user(admin, monkeypatch):
    monkeypatch.setattr(connection_tasks.connection_check, "delay", lambda *a: None)
    user, org = admin.user, admin.organization
    connection = connection_create(
        organization=org,
        name="Docs",
        server_url="https://docs.example.com/mcp",
        auth_type="bearer",
        token="sk-test-0123456789abcdef",
        actor=user,
    )
    connection_update(connection=connection, name="Docs v2", actor=user)
    connection_update(connection=connection, token="sk-test-new-0123456789", actor=user)
    endpoint = endpoint_create(
        organization=org, name="Support", connection_ids=[str(connection.pk)], actor=user
    )
    endpoint_update(endpoint=endpoint, pii_filter=True, actor=user)
    token, _ = api_token_create(organization=org, user=user, name="ci", actor=user)
    api_token_revoke(token=token, actor=user)
    endpoint_delete(endpoint=endpoint, actor=user)
    connection_delete(connection=connection, actor=user)

    assert _actions(org)[-9:] == [
        ("connection.created", "alice"),
        ("connection.updated", "alice"),
        ("connection.credentials_changed", "alice"),
        ("endpoint.created", "alice"),
        ("endpoint.updated", "alice"),
        ("token.created", "alice"),
        ("token.revoked", "alice"),
        ("endpoint.deleted", "alice"),
        ("connection.deleted", "alice"),
    ]
    events = ManagementEvent.objects.filter(organization_id=org.pk)
    assert events.get(action="connection.updated").details == {"fields": ["name"]}
    assert events.get(action="endpoint.updated").details == {"fields": ["piiFilter"]}
    stored = str(list(events.values_list("details", flat=True)))
    assert "sk-test" not in stored  # which fields changed, never their values


def test_toggles_through_the_api_are_recorded(admin):
    from tests.factories import ConnectionFactory, EndpointFactory

    endpoint = EndpointFactory(organization=admin.organization)
    ConnectionFactory(organization=admin.organization)
    response = admin.api().patch(
        f"/api/mcp-endpoints/{endpoint.pk}/tools", {"tools": []}, format="json"
    )
    assert response.status_code == 200
    # An empty change list changes nothing and records nothing.
    assert not ManagementEvent.objects.filter(action="endpoint.entries_changed").exists()


def test_the_token_page_records_who_created_the_token(admin, client):
    client.force_login(admin.user)
    client.post("/settings/api-tokens", {"name": "laptop"})
    event = ManagementEvent.objects.get(action="token.created", target_name="laptop")
    assert event.actor_id == admin.user.pk
    assert ApiToken.objects.filter(name="laptop").exists()


def test_retention_deletes_only_what_is_older_than_each_organisations_days(admin, other_admin):
    now = timezone.now()
    make_records(admin.organization, 30, start=now - timedelta(days=100))
    make_records(admin.organization, 5, start=now - timedelta(days=10))
    make_records(other_admin.organization, 7, start=now - timedelta(days=100))
    audit_policy_set(organization=other_admin.organization, retention_days=365)

    deleted = audit_retention_apply(batch=7)  # several batches

    assert deleted == 30
    assert AuditRecord.objects.filter(organization_id=admin.organization.pk).count() == 5
    assert AuditRecord.objects.filter(organization_id=other_admin.organization.pk).count() == 7
    audit_policy_set(organization=admin.organization, retention_days=1)
    assert audit_retention_apply() == 5


def test_the_retention_task_runs_the_service(admin):
    from audit.tasks import audit_retention

    make_records(admin.organization, 3, start=timezone.now() - timedelta(days=91))
    assert audit_retention() == 3
