"""``python -m gateway_project.run`` (what ``make run`` calls): the whole gateway in one command.

Migrates, creates the admin account if there is none, loads the demo (unless
``GATEWAY_DEMO=false``), then starts and supervises daphne (web UI, API, MCP
transport), the activity log's writer, a Celery worker with the beat scheduler
embedded, and the demo upstream MCP server. Ctrl-C, SIGTERM, or any of them exiting stops them all.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

from gateway_project.env import env_bool, env_int, env_str

STOP_GRACE_SECONDS = 10
# How far above a taken default port the supervisor looks for a free one.
PORT_SEARCH_SPAN = 100


def _port_free(host: str, port: int) -> bool:
    """Whether a server could listen on (host, port) now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As daphne and the demo server bind: a port in TIME_WAIT is free for them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_choose(variable: str, default: int, host: str, *, movable: bool = True) -> int:
    """The port for ``variable``: its value when set (which must be free), else
    ``default``, else the next free port above it, written back to the environment
    so that the settings and every child process agree. A busy machine (another
    gateway, a dev server on 8000) must not stop ``make run``; a port the operator
    chose explicitly is never moved."""
    if os.environ.get(variable, "").strip():
        port = env_int(variable, default, minimum=1, maximum=65535)
        if not _port_free(host, port):
            raise SystemExit(
                f"Port {port} on {host} ({variable}) is taken by another program: "
                f"stop it or set {variable} to a free port."
            )
        return port
    if _port_free(host, default):
        return default
    if movable:
        for port in range(default + 1, min(default + PORT_SEARCH_SPAN, 65535) + 1):
            if _port_free(host, port):
                os.environ[variable] = str(port)
                print(f"Port {default} is taken; using {port} (set {variable} to choose).")
                return port
    raise SystemExit(
        f"Port {default} on {host} is taken by another program: set {variable} to a free port."
    )


def _choose_ports() -> None:
    bind = os.environ.get("GATEWAY_BIND", "127.0.0.1")
    # A public URL set by the operator names the port clients use: moving daphne
    # away from it would break every link, so then a taken port is an error.
    port_choose("PORT", 8000, bind, movable=not env_str("GATEWAY_PUBLIC_URL"))
    if env_bool("GATEWAY_DEMO", not env_bool("GATEWAY_PRODUCTION", False)):
        port_choose("GATEWAY_DEMO_PORT", 8765, "127.0.0.1")


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
    _choose_ports()
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
