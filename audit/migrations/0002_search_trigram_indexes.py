"""Trigram indexes for the Activity search on PostgreSQL.

The search is ``name ILIKE %q% OR error_message ILIKE %q%`` (Django's ``icontains``:
``UPPER(col) LIKE UPPER(%q%)``). Without an index a search that matches nothing reads
every record of the organisation; GIN trigram indexes on ``UPPER(col)`` let PostgreSQL
answer it from the index. They need the ``pg_trgm`` extension (in PostgreSQL's contrib,
trusted since 13, so a database owner may create it); where it cannot be created the
migration says so and leaves the search unindexed. SQLite has no such index: the
embedded database is for trying the gateway, not for a million records.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, migrations, transaction

logger = logging.getLogger(__name__)

INDEXES = {
    "audit_name_trgm": "name",
    "audit_error_trgm": "error_message",
}


def _create(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    try:
        # A savepoint: a refused CREATE EXTENSION must not spoil the migration's transaction.
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError as error:  # the extension is missing or not ours to create
        logger.warning("Activity search stays unindexed: cannot create pg_trgm (%s)", error)
        return
    with connection.cursor() as cursor:
        for name, column in INDEXES.items():
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON audit_auditrecord "  # noqa: S608 (constants)
                f"USING gin (UPPER({column}::text) gin_trgm_ops)"
            )


def _drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name in INDEXES:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(_create, _drop)]
