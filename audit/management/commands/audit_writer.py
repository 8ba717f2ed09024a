"""``manage.py audit_writer``: store the activity log's spool in the database.

Gateway processes write each recorded call to their spool segment and, while this
process runs, leave the database insert to it (``audit.recorder``). ``make run``
starts it; in production run one per host that shares a spool folder. It stops on
SIGTERM or SIGINT after storing what waits.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from audit.recorder import WriterProcess, secrets_refresh_quietly


class Command(BaseCommand):
    help = (
        "Store the activity log's spool segments in the database as gateway processes close them."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        process = WriterProcess(
            Path(settings.GATEWAY_AUDIT_SPOOL_DIR),
            interval=settings.GATEWAY_AUDIT_FLUSH_INTERVAL_MS / 1000,
            refresh_secrets=secrets_refresh_quietly,
        )

        def on_signal(signum: int, frame: FrameType | None) -> None:
            process.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.stdout.write(f"Activity log writer: storing {settings.GATEWAY_AUDIT_SPOOL_DIR}")
        process.run()
        self.stdout.write(f"Activity log writer: stopped after storing {process.stored} records")
