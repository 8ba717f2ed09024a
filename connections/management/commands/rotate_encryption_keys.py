"""``manage.py rotate_encryption_keys``: re-encrypt stored secrets with the first key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from connections.crypto import SecretUnreadable, secret_rotate
from connections.models import Connection, UpstreamCredential, UpstreamOAuthFlow

# (model, column) pairs that hold ciphertext written by connections.fields.EncryptedJSONField.
ENCRYPTED_COLUMNS = [
    (Connection, "credential"),
    (Connection, "oauth_client"),
    (UpstreamCredential, "secret"),
    (UpstreamOAuthFlow, "secret"),
]


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first key of GATEWAY_ENCRYPTION_KEYS, "
        "after which older keys can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rotated = unreadable = 0
        with transaction.atomic(), connection.cursor() as cursor:
            for model, column in ENCRYPTED_COLUMNS:
                # Raw SQL on purpose: the ORM would decrypt on read and encrypt on write.
                table = connection.ops.quote_name(model._meta.db_table)
                col = connection.ops.quote_name(column)
                assert model._meta.pk is not None and model._meta.pk.column is not None
                pk = connection.ops.quote_name(model._meta.pk.column)
                cursor.execute(f"SELECT {pk}, {col} FROM {table} WHERE {col} IS NOT NULL")  # noqa: S608
                for key, ciphertext in cursor.fetchall():
                    try:
                        new = secret_rotate(ciphertext)
                    except SecretUnreadable:
                        unreadable += 1
                        continue
                    cursor.execute(f"UPDATE {table} SET {col} = %s WHERE {pk} = %s", [new, key])  # noqa: S608
                    rotated += 1
        self.stdout.write(f"Re-encrypted {rotated} secret(s) with the first configured key.")
        if unreadable:
            raise CommandError(
                f"{unreadable} secret(s) could not be decrypted with any configured key; "
                "keep the key that wrote them in GATEWAY_ENCRYPTION_KEYS."
            )
