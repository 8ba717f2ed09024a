"""The databases of a conformance run, apart from those DATABASE_URL and REDIS_URL name.

``python -m tests.conformance.database postgres`` prints the URL of the Postgres database
``<name>_conformance`` next to DATABASE_URL's, creating it first if it does not exist;
``python -m tests.conformance.database redis`` prints REDIS_URL with database number 15.
A run then never writes into the databases a developer's gateway or the test suite use —
the tests' ``cache.clear()`` empties (FLUSHDB) the whole Redis database they share, which
would drop a running gateway's channel-layer groups.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit, urlunsplit

SUFFIX = "_conformance"
REDIS_DB = 15


def conformance_url(database_url: str) -> str:
    """``postgres://…/gateway?x=1`` -> ``postgres://…/gateway_conformance?x=1``."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/") or "gateway"
    if not name.endswith(SUFFIX):
        name += SUFFIX
    return urlunsplit(parts._replace(path=f"/{name}"))


def ensure_database(database_url: str) -> None:
    """Create the database the URL names when it is missing."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if found.fetchone() is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def redis_url(url: str) -> str:
    """``redis://host:6379/0`` -> ``redis://host:6379/15`` (query string kept)."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{REDIS_DB}"))


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which == "postgres" and os.environ.get("DATABASE_URL"):
        url = conformance_url(os.environ["DATABASE_URL"])
        ensure_database(url)
        print(url)
    elif which == "redis" and os.environ.get("REDIS_URL"):
        print(redis_url(os.environ["REDIS_URL"]))
    else:
        sys.exit("usage: python -m tests.conformance.database postgres|redis (with its URL set)")


if __name__ == "__main__":
    main()
