"""Credentials are encrypted at rest, with key rotation, and never lost to a missing key."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection as db

from connections.fields import UnreadableSecret
from connections.models import Connection
from connections.services import connection_create, connection_update

TOKEN = "sk-live-plaintext-987654321"


def raw_column(connection_id) -> str | None:
    """The credential column as stored, bypassing the field's decryption."""
    key = Connection._meta.pk.get_db_prep_value(connection_id, db)
    with db.cursor() as cursor:
        cursor.execute("SELECT credential FROM connections_connection WHERE id = %s", [key])
        return cursor.fetchone()[0]


@pytest.fixture
def bearer(org):
    return connection_create(
        organization=org,
        name="Vault",
        server_url="https://vault.example.com/mcp",
        auth_type="bearer",
        token=TOKEN,
        headers={"X-Api-Key": "header-secret-42"},
    )


def test_the_raw_column_holds_only_ciphertext(bearer):
    raw = raw_column(bearer.pk)

    assert raw
    assert TOKEN not in raw
    assert "header-secret-42" not in raw
    assert "X-Api-Key" not in raw
    assert Connection.objects.get(pk=bearer.pk).token == TOKEN


def test_a_connection_without_a_secret_stores_null(org):
    connection = connection_create(
        organization=org, name="Open", server_url="https://open.example.com"
    )

    assert raw_column(connection.pk) is None


def test_old_keys_still_decrypt_after_a_new_key_is_put_first(bearer, settings):
    old_key = settings.GATEWAY_ENCRYPTION_KEYS[0]
    settings.GATEWAY_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old_key]

    assert Connection.objects.get(pk=bearer.pk).token == TOKEN


def test_rotation_re_encrypts_with_the_first_key_so_the_old_one_can_go(bearer, settings):
    old_key = settings.GATEWAY_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    before = raw_column(bearer.pk)
    settings.GATEWAY_ENCRYPTION_KEYS = [new_key, old_key]

    call_command("rotate_encryption_keys")

    after = raw_column(bearer.pk)
    assert after != before
    settings.GATEWAY_ENCRYPTION_KEYS = [new_key]
    stored = Connection.objects.get(pk=bearer.pk)
    assert stored.token == TOKEN
    assert stored.headers == {"X-Api-Key": "header-secret-42"}


def test_a_missing_key_shows_the_secret_as_unreadable_and_saving_keeps_it(bearer, settings):
    original_keys = settings.GATEWAY_ENCRYPTION_KEYS
    ciphertext = raw_column(bearer.pk)
    settings.GATEWAY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    stored = Connection.objects.get(pk=bearer.pk)
    assert isinstance(stored.credential, UnreadableSecret)
    assert stored.credential_unreadable and stored.token_is_set
    connection_update(connection=stored, name="Vault renamed")

    assert raw_column(bearer.pk) == ciphertext
    settings.GATEWAY_ENCRYPTION_KEYS = original_keys
    assert Connection.objects.get(pk=bearer.pk).token == TOKEN


def test_rotation_reports_secrets_no_key_can_read(bearer, settings):
    settings.GATEWAY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(CommandError, match="could not be decrypted"):
        call_command("rotate_encryption_keys")
