"""Credential modes: shared or personal credentials, what each call is sent with, and the
rules that keep a token from reaching a server it was not given for."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers, get_channel_layer
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection as db
from django.utils import timezone

from audit.models import ManagementEvent
from audit.services import connection_secret_values
from connections import credentials
from connections.models import (
    AuthType,
    Connection,
    CredentialKind,
    CredentialMode,
    CredentialState,
    UpstreamCredential,
)
from connections.services import (
    connection_create,
    connection_update,
    health_check_credential,
    upstream_target_for,
)
from connections.upstream import UpstreamError
from endpoints.events import SESSIONS_GROUP

ALICE_TOKEN = "alice-personal-token-0001"
BOB_TOKEN = "bob-personal-token-0002"


@pytest.fixture
def personal(org) -> Connection:
    return connection_create(
        organization=org,
        name="Tickets",
        server_url="https://tickets.example.com/mcp",
        auth_type=AuthType.BEARER,
        credential_mode=CredentialMode.PERSONAL,
        headers={"X-Api-Version": "2"},
    )


@pytest.fixture
def sessions_group(settings) -> Iterator[Any]:
    """The channel-layer group every gateway process listens on; returns its messages."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(SESSIONS_GROUP, channel)

    def received() -> list[dict[str, Any]]:
        async def drain() -> list[dict[str, Any]]:
            messages = []
            while True:
                try:
                    messages.append(await asyncio.wait_for(layer.receive(channel), 0.05))
                except TimeoutError:
                    return messages

        return async_to_sync(drain)()

    yield received
    channel_layers.backends.clear()


def test_each_user_calls_a_personal_server_with_their_own_token(personal, admin, member):
    credentials.personal_token_set(connection=personal, user=admin.user, token=ALICE_TOKEN)
    credentials.personal_token_set(connection=personal, user=member.user, token=BOB_TOKEN)

    alice = upstream_target_for(connection=personal, user_id=admin.user.pk)
    bob = upstream_target_for(connection=personal, user_id=member.user.pk)

    assert alice.headers == {"X-Api-Version": "2", "Authorization": f"Bearer {ALICE_TOKEN}"}
    assert bob.headers["Authorization"] == f"Bearer {BOB_TOKEN}"
    assert alice.pool_key != bob.pool_key  # separate upstream sessions
    assert alice.personal and not alice.refreshable


def test_a_user_without_a_credential_is_told_where_to_add_it(personal, member, settings):
    settings.GATEWAY_PUBLIC_URL = "https://gw.example.com"

    with pytest.raises(UpstreamError) as caught:
        upstream_target_for(connection=personal, user_id=member.user.pk)

    assert caught.value.kind == "needs_credential"
    assert "'Tickets'" in caught.value.message
    assert "https://gw.example.com/me/connections" in caught.value.message


def test_a_credential_needing_reauth_is_refused_with_the_page_to_renew_it(personal, member):
    credential = credentials.personal_token_set(
        connection=personal, user=member.user, token=BOB_TOKEN
    )
    credentials.credential_mark_needs_reauth(credential=credential, reason="refused")

    with pytest.raises(UpstreamError) as caught:
        upstream_target_for(connection=personal, user_id=member.user.pk)

    assert caught.value.kind == "needs_reauth"
    assert "/me/connections" in caught.value.message


def test_the_token_is_stored_encrypted_and_its_setting_is_recorded_without_it(personal, member):
    credential = credentials.personal_token_set(
        connection=personal, user=member.user, token=f"  {BOB_TOKEN}  "
    )

    with db.cursor() as cursor:
        cursor.execute(
            "SELECT secret FROM connections_upstreamcredential WHERE id = %s",
            [UpstreamCredential._meta.pk.get_db_prep_value(credential.pk, db)],
        )
        raw = cursor.fetchone()[0]
    assert BOB_TOKEN not in raw
    assert UpstreamCredential.objects.get(pk=credential.pk).bearer == BOB_TOKEN
    event = ManagementEvent.objects.get(action="connection.credentials_changed")
    assert event.details == {"change": "personal_token_set", "user": "bob"}
    assert event.actor_name == "bob"
    assert BOB_TOKEN not in str(event.details)
    assert BOB_TOKEN in connection_secret_values()  # the activity log will redact it


def test_a_change_tells_every_process_once_committed(
    personal, member, sessions_group, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        credentials.personal_token_set(connection=personal, user=member.user, token=BOB_TOKEN)
    assert sessions_group() == []

    for callback in callbacks:
        callback()
    assert sessions_group() == [
        {
            "type": "mcp.credentials.changed",
            "connection_id": str(personal.pk),
            "user_id": member.user.pk,
        }
    ]

    with django_capture_on_commit_callbacks(execute=True):
        assert credentials.credential_remove(connection=personal, user=member.user)
    assert sessions_group()[0]["user_id"] == member.user.pk
    assert not UpstreamCredential.objects.exists()


def test_editing_the_connection_drops_every_cached_target_of_it(
    personal, sessions_group, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        connection_update(connection=personal, headers={"X-Api-Version": "3"})

    assert sessions_group() == [
        {"type": "mcp.credentials.changed", "connection_id": str(personal.pk), "user_id": None}
    ]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"auth_type": "none"}, "credentialMode", "bearer or OAuth"),
        ({"auth_type": "bearer", "token": "shared-token-123"}, "token", "their own token"),
    ],
)
def test_personal_mode_needs_a_way_for_each_user_to_authenticate(org, fields, field, message):
    with pytest.raises(ValidationError) as caught:
        connection_create(
            organization=org,
            name="X",
            server_url="https://x.example.com/mcp",
            credential_mode="personal",
            **fields,
        )

    assert any(message in text for text in caught.value.message_dict[field])


def test_an_oauth_connection_takes_no_token_and_a_stdio_one_no_personal_mode(org, settings):
    settings.GATEWAY_ALLOW_STDIO = True
    with pytest.raises(ValidationError) as caught:
        connection_create(
            organization=org,
            name="X",
            server_url="https://x.example.com/mcp",
            auth_type="oauth",
            token="abc-123-def",
        )
    assert "takes no token" in caught.value.message_dict["token"][0]

    with pytest.raises(ValidationError) as caught:
        connection_create(
            organization=org, name="Y", transport="stdio", command="cat", credential_mode="personal"
        )
    assert "credentialMode" in caught.value.message_dict

    with pytest.raises(ValidationError) as caught:
        connection_create(
            organization=org, name="Z", server_url="https://z.example.com", credential_mode="p"
        )
    assert "credentialMode" in caught.value.message_dict


def test_switching_to_personal_drops_the_shared_token(org, member):
    connection = connection_create(
        organization=org,
        name="Docs",
        server_url="https://docs.example.com/mcp",
        auth_type="bearer",
        token="shared-token-123",
    )

    connection_update(connection=connection, credential_mode="personal")

    connection.refresh_from_db()
    assert connection.token is None
    with pytest.raises(UpstreamError):
        upstream_target_for(connection=connection, user_id=member.user.pk)


def test_a_new_server_url_removes_every_user_token(personal, admin, member):
    credentials.personal_token_set(connection=personal, user=admin.user, token=ALICE_TOKEN)
    credentials.personal_token_set(connection=personal, user=member.user, token=BOB_TOKEN)

    connection_update(connection=personal, server_url="https://elsewhere.example.com/mcp")

    assert not UpstreamCredential.objects.exists()
    event = ManagementEvent.objects.filter(action="connection.credentials_changed").first()
    assert event.details["userCredentialsRemoved"] == 2


def test_switching_back_to_shared_removes_personal_credentials(personal, member):
    credentials.personal_token_set(connection=personal, user=member.user, token=BOB_TOKEN)

    connection_update(connection=personal, credential_mode="shared", token="shared-token-123")

    assert not UpstreamCredential.objects.exists()
    target = upstream_target_for(connection=personal, user_id=member.user.pk)
    assert target.headers["Authorization"] == "Bearer shared-token-123"


def test_a_shared_connection_ignores_who_calls(org, member):
    connection = connection_create(
        organization=org,
        name="Docs",
        server_url="https://docs.example.com/mcp",
        auth_type="bearer",
        token="shared-token-123",
    )

    assert (
        upstream_target_for(connection=connection, user_id=member.user.pk).headers
        == upstream_target_for(connection=connection, user_id=None).headers
    )


def test_pasting_a_token_is_refused_where_it_does_not_apply(org, personal, member):
    shared = connection_create(organization=org, name="Open", server_url="https://o.example.com")
    oauth = connection_create(
        organization=org,
        name="Signed",
        server_url="https://s.example.com/mcp",
        auth_type="oauth",
        credential_mode="personal",
    )

    for connection, text in ((shared, "shared credential"), (oauth, "sign in")):
        with pytest.raises(ValidationError) as caught:
            credentials.personal_token_set(connection=connection, user=member.user, token="x" * 20)
        assert text in caught.value.message_dict["token"][0]
    for bad in ("", "two words", "a" * 9000):
        with pytest.raises(ValidationError):
            credentials.personal_token_set(connection=personal, user=member.user, token=bad)


def test_a_personal_health_check_uses_the_admins_credential_else_anyones(personal, admin, member):
    assert isinstance(health_check_credential(connection=personal), UpstreamError)

    bobs = credentials.personal_token_set(connection=personal, user=member.user, token=BOB_TOKEN)
    assert health_check_credential(connection=personal) == bobs

    alices = credentials.personal_token_set(connection=personal, user=admin.user, token=ALICE_TOKEN)
    assert health_check_credential(connection=personal) == alices
    assert health_check_credential(connection=personal, user=member.user) == bobs


def test_nobody_connected_leaves_a_personal_server_unknown_not_failing(personal):
    from connections.services import connection_check_health

    check = connection_check_health(connection=personal)

    personal.refresh_from_db()
    assert not check.ok
    assert check.error_kind == "needs_credential"
    assert personal.status == "unknown"
    assert personal.consecutive_failures == 0


def test_display_states(personal, member, settings):
    settings.GATEWAY_UPSTREAM_OAUTH_REFRESH_MARGIN = 300
    credential = credentials.personal_token_set(
        connection=personal, user=member.user, token=BOB_TOKEN
    )
    assert credentials.credential_display_state(credential) == "valid"

    credential.expires_at = timezone.now() + timedelta(seconds=60)
    assert credentials.credential_display_state(credential) == "expiring"

    credential.state = CredentialState.NEEDS_REAUTH
    assert credentials.credential_display_state(credential) == "needs_reauth"


def test_key_rotation_reencrypts_user_credentials(personal, member, settings):
    from cryptography.fernet import Fernet

    credential = credentials.personal_token_set(
        connection=personal, user=member.user, token=BOB_TOKEN
    )
    old = list(settings.GATEWAY_ENCRYPTION_KEYS)
    new_key = Fernet.generate_key().decode()
    settings.GATEWAY_ENCRYPTION_KEYS = [new_key, *old]

    call_command("rotate_encryption_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115

    settings.GATEWAY_ENCRYPTION_KEYS = [new_key]
    assert UpstreamCredential.objects.get(pk=credential.pk).bearer == BOB_TOKEN
    assert UpstreamCredential.objects.get(pk=credential.pk).kind == CredentialKind.TOKEN
