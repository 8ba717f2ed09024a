"""``python -m gateway_project.run`` (what ``make run`` calls): the whole gateway in one command.

Migrates, creates the admin account if there is none, loads the demo (unless
``GATEWAY_DEMO=false``), then starts and supervises daphne (web UI, API, MCP
transport), the activity log's writer, a Celery worker with the beat scheduler
embedded, and the demo upstream MCP server. Ctrl-C, SIGTERM, or any of them exiting stops them all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType

STOP_GRACE_SECONDS = 10


def _prepare() -> None:
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    call_command("ensure_admin")
    if settings.GATEWAY_DEMO:
        call_command("load_demo")


def daphne_command(*, python: str, bind: str, port: int) -> list[str]:
    """The web server's command line.

    Without ``--proxy-headers``: daphne would take the first ``X-Forwarded-For``
    entry from any peer as the client's address, so one client could pass for
    many. ``gateway_project.client_address`` reads it from trusted proxies only.
    """
    return [python, "-m", "daphne", "-b", bind, "-p", str(port), "gateway_project.asgi:application"]


def _commands() -> list[tuple[str, list[str]]]:
    from django.conf import settings

    python = sys.executable
    bind = os.environ.get("GATEWAY_BIND", "127.0.0.1")
    commands = [
        ("web", daphne_command(python=python, bind=bind, port=settings.PORT)),
        # Stores the activity log's spool, so daphne spends no time on database inserts.
        (
            "audit-writer",
            [python, "-m", "django", "audit_writer"],
        ),
        (
            "worker",
            [
                python,
                "-m",
                "celery",
                "-A",
                "gateway_project",
                "worker",
                "--beat",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "--schedule",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
            ],
        ),
    ]
    if settings.GATEWAY_DEMO:
        # First, so that the worker's first health check finds it listening.
        commands.insert(
            0,
            (
                "demo-upstream",
                [
                    python,
                    "-m",
                    "connections.demo.upstream",
                    "streamable-http",
                    str(settings.GATEWAY_DEMO_PORT),
                ],
            ),
        )
    return commands


# Stopped last, so that it stores the segments the others close as they stop.
LAST = ("audit-writer",)


def _stop(children: dict[str, subprocess.Popen[bytes]]) -> None:
    first = [child for name, child in children.items() if name not in LAST]
    last = [child for name, child in children.items() if name in LAST]
    for group in (first, last):
        for child in group:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in group:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    _prepare()
    from django.conf import settings

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    children: dict[str, subprocess.Popen[bytes]] = {}
    for name, command in _commands():
        # Own process group: Ctrl-C reaches us once, and we stop the children in order.
        children[name] = subprocess.Popen(command, start_new_session=True)  # noqa: S603
    print(
        f"\n  MCP gateway: {settings.GATEWAY_PUBLIC_URL}/  (sign in as "
        f"{settings.GATEWAY_ADMIN_USERNAME!r}; Ctrl-C stops everything)\n",
        flush=True,
    )
    exit_code = 0
    try:
        while not stopping:
            for name, child in children.items():
                code = child.poll()
                if code is not None:
                    print(f"{name} exited with status {code}; stopping the gateway.", flush=True)
                    exit_code = code or 1
                    stopping = True
                    break
            time.sleep(0.5)
    finally:
        print("Stopping…", flush=True)
        _stop(children)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
