"""Signals other apps listen to (connections depends on no other app)."""

from django.dispatch import Signal

catalog_changed = Signal()
"""Sent after a catalog refresh changed what a server offers (entries added, changed or
gone, or its instructions): ``connection`` and ``counts`` ({added, changed, missing})."""

credentials_changed = Signal()
"""Sent once a credential change committed: ``connection_id`` (str) and ``user_id`` (the
user whose own credential changed, or None when it concerns every user of the connection)."""
