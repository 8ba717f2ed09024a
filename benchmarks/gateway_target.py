"""The "gateway" target of the benchmarks: a real deployment of this project on loopback.

``start_gateway(upstream_urls)`` prepares a data folder, migrates (Postgres and Redis when
``DATABASE_URL`` / ``REDIS_URL`` are given — the production path the targets are set for —
else the embedded SQLite), provisions an organisation, an API token and one connection per
upstream URL through ``manage.py`` (``ensure_admin``, ``shell`` running
``benchmarks/gateway_setup.py``, ``create_api_token``), creates the endpoint, and starts
several daphne processes, each on its own port, and the activity log's writer process (unless
the log is off). It returns the endpoint's MCP URL on each daphne (the load generator spreads
its workers over them), the bearer token, and the pids whose CPU time and memory the runner
measures (the daphnes, then the writer).

``python benchmarks/gateway_target.py --check-setup --upstream URL`` runs every step but the
endpoint and checks through the REST API that the connections and their catalogs are there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
USERNAME = "bench-admin"
READY_TIMEOUT = 60.0
STOP_GRACE = 10.0
DEFAULT_PROCESSES = 2

_children: dict[int, subprocess.Popen[bytes]] = {}


class GatewayTarget(NamedTuple):
    """A running gateway: the endpoint's URL on each daphne process, a token, the pids."""

    mcp_urls: list[str]
    bearer_token: str
    pids: list[int]


@dataclass(frozen=True)
class GatewaySetup:
    """What ``prepare_gateway`` provisioned."""

    env: dict[str, str]
    data_dir: Path
    organization: str
    connection_ids: list[str]
    endpoint_slug: str | None
    bearer_token: str


def start_gateway(
    upstream_urls: Sequence[str],
    *,
    processes: int = DEFAULT_PROCESSES,
    data_dir: Path | None = None,
    database_url: str | None = None,
    redis_url: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> GatewayTarget:
    """Deploy the gateway in front of ``upstream_urls`` and start ``processes`` daphnes.

    ``extra_env`` is added to the daphnes' environment (e.g. the activity log off).
    """
    setup = prepare_gateway(
        upstream_urls, data_dir=data_dir, database_url=database_url, redis_url=redis_url
    )
    setup.env.update(extra_env or {})
    ports, pids = start_daphne(setup, processes=processes)
    if setup.env.get("GATEWAY_AUDIT_ENABLED", "true").lower() not in ("false", "0", "no", "off"):
        # As `make run` deploys it: the activity log's writer stores the spool, so its
        # CPU time counts as the gateway's.
        pids.append(start_audit_writer(setup))
    urls = [f"http://127.0.0.1:{port}/mcp/{setup.endpoint_slug}" for port in ports]
    return GatewayTarget(urls, setup.bearer_token, pids)


def gateway_env(
    data_dir: Path, *, database_url: str | None, redis_url: str | None
) -> dict[str, str]:
    """The environment of every gateway process of the benchmark."""
    env = dict(os.environ)
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(
        GATEWAY_DATA_DIR=str(data_dir),
        GATEWAY_DEMO="false",
        # The benchmark upstreams listen on loopback.
        GATEWAY_ALLOW_PRIVATE_UPSTREAMS="true",
        GATEWAY_LOG_LEVEL="WARNING",
        GATEWAY_ADMIN_USERNAME=USERNAME,
        DJANGO_SETTINGS_MODULE="gateway_project.settings",
    )
    return env


def gateway_python() -> str:
    venv_python = REPO / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def ensure_database(database_url: str) -> None:
    """Create the Postgres database named in the URL if it does not exist yet."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        found = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if found is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _manage(env: dict[str, str], *args: str) -> str:
    """Run ``manage.py`` with ``args``; its stdout, or RuntimeError with its output."""
    completed = subprocess.run(  # noqa: S603 (our own interpreter and manage.py)
        [gateway_python(), "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"manage.py {args[0]} failed ({completed.returncode}):\n"
            f"{completed.stdout[-2000:]}{completed.stderr[-4000:]}"
        )
    return completed.stdout


def prepare_gateway(
    upstream_urls: Sequence[str],
    *,
    data_dir: Path | None = None,
    database_url: str | None = None,
    redis_url: str | None = None,
    skip_endpoint: bool = False,
) -> GatewaySetup:
    """Migrate, create the admin, organisation, connections (with catalogs), endpoint, token."""
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    env = gateway_env(data_dir, database_url=database_url, redis_url=redis_url)
    if database_url:
        ensure_database(database_url)
    _manage(env, "migrate", "--no-input", "-v", "0")
    _manage(env, "ensure_admin")
    setup_env = {
        **env,
        # Run the post-save health check inline rather than queue it for a worker.
        "GATEWAY_CELERY_EAGER": "true",
        "BENCH_GATEWAY_SETUP": json.dumps(
            {
                "username": USERNAME,
                "upstreamUrls": list(upstream_urls),
                "skipEndpoint": skip_endpoint,
            }
        ),
    }
    output = _manage(setup_env, "shell", "-c", "from benchmarks.gateway_setup import main; main()")
    provisioned = json.loads(output.strip().splitlines()[-1])
    token = _manage(
        env,
        "create_api_token",
        USERNAME,
        "--org",
        provisioned["organization"],
        "--name",
        "benchmark",
    ).strip()
    return GatewaySetup(
        env=env,
        data_dir=data_dir,
        organization=provisioned["organization"],
        connection_ids=provisioned["connectionIds"],
        endpoint_slug=provisioned["endpointSlug"],
        bearer_token=token,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_daphne(setup: GatewaySetup, *, processes: int) -> tuple[list[int], list[int]]:
    """Start ``processes`` daphnes on free loopback ports; (ports, pids) once all answer."""
    logs = setup.data_dir / "logs"
    logs.mkdir(exist_ok=True)
    ports: list[int] = []
    pids: list[int] = []
    try:
        for index in range(processes):
            port = free_port()
            child_pid = _start_child(
                setup,
                f"daphne-{index}",
                [
                    "-m",
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-v",
                    "0",
                    "gateway_project.asgi:application",
                ],
            )
            ports.append(port)
            pids.append(child_pid)
        for port, pid in zip(ports, pids, strict=True):
            wait_until_ready(port, setup.bearer_token, pid=pid)
    except BaseException:
        stop_processes(pids)
        raise
    return ports, pids


def start_audit_writer(setup: GatewaySetup) -> int:
    """Start ``manage.py audit_writer`` on the deployment's spool folder; its pid."""
    return _start_child(setup, "audit-writer", ["manage.py", "audit_writer"])


def _start_child(setup: GatewaySetup, name: str, arguments: list[str]) -> int:
    """Start the gateway's interpreter with ``arguments``, logging to ``logs/<name>.log``."""
    log = open(setup.data_dir / "logs" / f"{name}.log", "wb")  # noqa: SIM115 (the child's)
    child = subprocess.Popen(  # noqa: S603 (our own interpreter and code)
        [gateway_python(), *arguments],
        cwd=REPO,
        env=setup.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    _children[child.pid] = child
    return child.pid


def api_get(port: int, path: str, token: str) -> tuple[int, bytes]:
    """GET a REST API path with the bearer token: (status, body)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until_ready(port: int, token: str, *, pid: int) -> None:
    """Wait until the daphne on ``port`` answers an authenticated API request with 200."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        child = _children.get(pid)
        if child is not None and child.poll() is not None:
            raise RuntimeError(f"daphne on port {port} exited with status {child.returncode}")
        try:
            status, _ = api_get(port, "/api/mcp-connections", token)
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as error:
            last = str(error)
        time.sleep(0.2)
    raise RuntimeError(f"daphne on port {port} not ready after {READY_TIMEOUT:.0f} s: {last}")


def stop_processes(pids: Sequence[int]) -> None:
    """Terminate the processes this module started (SIGTERM, then SIGKILL after a grace)."""
    for pid in pids:
        child = _children.get(pid)
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for pid in pids:
        child = _children.pop(pid, None)
        if child is None:
            continue
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _check_setup(args: argparse.Namespace) -> int:
    started = time.monotonic()
    setup = prepare_gateway(
        args.upstream,
        database_url=args.database_url,
        redis_url=args.redis_url,
        skip_endpoint=True,
    )
    print(f"provisioned organisation {setup.organization!r} in {setup.data_dir}")
    ports, pids = start_daphne(setup, processes=args.processes)
    print(f"daphne ready on ports {ports} after {time.monotonic() - started:.1f} s")
    try:
        for port in ports:
            status, body = api_get(port, "/api/mcp-connections", setup.bearer_token)
            listed = json.loads(body)["connections"]
            print(f"  :{port} GET /api/mcp-connections -> {status}, {len(listed)} connections")
            for connection in listed:
                _, catalog = api_get(
                    port, f"/api/mcp-connections/{connection['id']}/catalog", setup.bearer_token
                )
                tools = len(json.loads(catalog)["tools"])
                print(f"    {connection['name']}: {connection['status']}, {tools} tools")
    finally:
        stop_processes(pids)
        shutil.rmtree(setup.data_dir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check-setup", action="store_true", required=True)
    parser.add_argument("--upstream", action="append", required=True)
    parser.add_argument("--processes", type=int, default=DEFAULT_PROCESSES)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    return _check_setup(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
