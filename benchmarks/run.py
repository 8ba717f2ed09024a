"""``make bench``: direct vs peer (FastMCP proxy) vs gateway, measured in one run, alternating.

Starts the benchmark upstream (``benchmarks/upstream.py``, one process; every path is a
separate upstream server), the peer (``benchmarks/peer.py`` in ``benchmarks/.venv-peer``,
created on first use) in front of one upstream and again in front of ``--connections``
upstreams, and — when the MCP transport exists — the gateway (``benchmarks/gateway_target.py``).
Then, for each round, each target in turn (the order rotates between rounds), it runs the
load generator (``benchmarks/loadgen.py``) through these scenarios:

- ``call_c1``: ``tools/call`` at concurrency 1 (latency p50/p99, CPU per call);
- ``call_c16`` / ``call_c64``: throughput at concurrency 16 and 64 (CPU per call, errors);
- ``list_1`` / ``list_10``: ``tools/list`` at concurrency 1 through 1 and 10 connections.

The CPU time of the proxy's processes (and of the upstream) is read from
``/proc/<pid>/task/*/schedstat`` at the edges of each measurement window; peak RSS is ``VmHWM``.
Prints a table with ratios and writes ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(REPO))

from benchmarks import gateway_target  # noqa: E402

PEER_VENV = BENCH / ".venv-peer"
PEER_REQUIREMENTS = BENCH / "requirements-peer.txt"
RESULTS = BENCH / "results"
TARGETS = ("direct", "peer", "gateway")
# The gateway again with the activity log off (GATEWAY_AUDIT_ENABLED=false), calls only:
# its throughput beside the gateway's shows what recording costs (issue 7: <= 15%).
AUDIT_OFF = "gateway-audit-off"
START_TIMEOUT = 90.0


@dataclass(frozen=True)
class Scenario:
    name: str
    mode: str  # "call" or "list"
    concurrency: int
    part: str  # which deployment serves it: "call", "list1" or "list10"
    label: str


SCENARIOS = (
    Scenario("call_c1", "call", 1, "call", "tools/call, concurrency 1"),
    Scenario("call_c16", "call", 16, "call", "tools/call, concurrency 16"),
    Scenario("call_c64", "call", 64, "call", "tools/call, concurrency 64"),
    Scenario("list_1", "list", 1, "list1", "tools/list, 1 connection"),
    Scenario("list_10", "list", 1, "list10", "tools/list, 10 connections"),
)


@dataclass
class Part:
    """One deployment a scenario talks to: its URLs, measured pids, upstream paths."""

    urls: list[str]
    pids: list[int]
    upstream_paths: list[str]
    bearer: str | None = None


@dataclass
class Target:
    """A thing measured: direct to the upstream, the peer, or the gateway."""

    name: str
    parts: dict[str, Part]
    notes: list[str] = field(default_factory=list)


class Processes:
    """The child processes of the run, stopped together at the end."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []
        self.gateway_pids: list[int] = []

    def start(self, command: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        with open(log, "wb") as log_file:
            child = subprocess.Popen(  # noqa: S603 (our own scripts)
                command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )
        self.children.append(child)
        return child

    def stop(self) -> None:
        gateway_target.stop_processes(self.gateway_pids)
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


# -- starting things -----------------------------------------------------------------------


def ensure_peer_venv(out: TextIO) -> Path:
    """The peer's interpreter; creates ``.venv-peer`` from requirements-peer.txt if needed."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".installed"
    wanted = hashlib.sha256(PEER_REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    base = shutil.which("python3.11") or sys.executable
    print(
        f"Creating {PEER_VENV.relative_to(REPO)} (fastmcp, first run only)…", file=out, flush=True
    )
    subprocess.run([base, "-m", "venv", str(PEER_VENV)], check=True)  # noqa: S603
    subprocess.run(  # noqa: S603
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(PEER_REQUIREMENTS)], check=True
    )
    stamp.write_text(wanted)
    return python


def start_upstream(processes: Processes, logs: Path, tools: int) -> tuple[int, int]:
    """Start the benchmark upstream; (port, pid)."""
    with open(logs / "upstream.log", "wb") as log:
        child = subprocess.Popen(  # noqa: S603 (our own script)
            [sys.executable, str(BENCH / "upstream.py"), "--port", "0", "--tools", str(tools)],
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
    processes.children.append(child)
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        raise RuntimeError(f"the upstream did not start; see {logs / 'upstream.log'}")
    ready = json.loads(line)
    return int(ready["port"]), int(ready["pid"])


def wait_for_port(port: int, child: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"exited with status {child.returncode}; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"not listening on port {port} after {START_TIMEOUT:.0f} s; see {log}")


def start_peer(
    processes: Processes,
    logs: Path,
    python: Path,
    upstreams: list[str],
    *,
    name: str,
    args: argparse.Namespace,
) -> tuple[str, int]:
    """Start a FastMCP proxy in front of ``upstreams``; (MCP URL, pid)."""
    port = gateway_target.free_port()
    command = [str(python), str(BENCH / "peer.py"), "--port", str(port)]
    for url in upstreams:
        command += ["--upstream", url]
    if not args.peer_sse:
        command.append("--json-response")
    if args.peer_stateless:
        command.append("--stateless")
    log = logs / f"{name}.log"
    child = processes.start(command, log)
    wait_for_port(port, child, log)
    return f"http://127.0.0.1:{port}/mcp", child.pid


def upstream_stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as response:
        stats: dict[str, Any] = json.load(response)
        return stats


def peak_rss_mb(pids: Sequence[int]) -> float | None:
    """Sum of the peak resident set sizes (VmHWM) of ``pids``, in MiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            return None
    return total / 1024 if pids else None


# -- measuring -----------------------------------------------------------------------------


def run_loadgen(
    *,
    part: Part,
    scenario: Scenario,
    upstream_pid: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    command = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        "--json",
        "--mode",
        scenario.mode,
        "--concurrency",
        str(scenario.concurrency),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--protocol-version",
        args.protocol_version,
        "--watch",
        f"upstream={upstream_pid}",
    ]
    for url in part.urls:
        command += ["--url", url]
    if part.pids:
        command += ["--watch", "proxy=" + ",".join(str(pid) for pid in part.pids)]
    env = dict(os.environ)
    env.pop("LOADGEN_BEARER", None)
    if part.bearer:
        env["LOADGEN_BEARER"] = part.bearer  # not on the command line, where ps would show it
    completed = subprocess.run(  # noqa: S603 (our own script)
        command,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=args.duration + args.warmup + 120,
    )
    if completed.returncode not in (0, 1) or not completed.stdout.strip():
        return {"failed": (completed.stderr or completed.stdout).strip()[-500:]}
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


def _count(stats: dict[str, Any], counter: str, paths: Sequence[str]) -> int:
    by_path: dict[str, int] = stats[counter]
    return sum(by_path.get(path, 0) for path in paths)


def measure(
    targets: Sequence[Target],
    *,
    upstream_port: int,
    upstream_pid: int,
    args: argparse.Namespace,
    out: TextIO,
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for round_index in range(args.rounds):
        shift = round_index % len(targets)
        order = [*targets[shift:], *targets[:shift]]
        print(
            f"Round {round_index + 1}/{args.rounds}: {', '.join(t.name for t in order)}", file=out
        )
        for target in order:
            for scenario in SCENARIOS:
                part = target.parts.get(scenario.part)
                if part is None:
                    continue
                before = upstream_stats(upstream_port)
                report = run_loadgen(
                    part=part,
                    scenario=scenario,
                    upstream_pid=upstream_pid,
                    args=args,
                )
                after = upstream_stats(upstream_port)

                def delta(
                    counter: str,
                    paths: list[str] = part.upstream_paths,
                    before: dict[str, Any] = before,
                    after: dict[str, Any] = after,
                ) -> int:
                    return _count(after, counter, paths) - _count(before, counter, paths)

                runs.append(
                    {
                        "round": round_index + 1,
                        "target": target.name,
                        "scenario": scenario.name,
                        # Upstream requests on this target's paths during the whole run
                        # (warm-up included): sessions opened, calls and lists forwarded.
                        "upstreamHandshakes": delta("handshakesByPath"),
                        "upstreamCalls": delta("callsByPath"),
                        "upstreamLists": delta("listsByPath"),
                        "report": report,
                    }
                )
                print(f"  {target.name:8} {scenario.name:9} {_one_line(report)}", file=out)
                out.flush()
    return runs


def _one_line(report: dict[str, Any]) -> str:
    if "failed" in report:
        return f"FAILED: {report['failed'][:200]}"
    latency = report["latencyMs"]
    cpu = report["cpuMsPerCall"].get("proxy")
    cpu_text = f", proxy CPU {cpu:.3f} ms/call" if cpu is not None else ""
    errors = f", {report['errors']} ERRORS" if report["errors"] else ""
    return (
        f"{report['throughput']:8.0f}/s  p50 {latency['p50']:7.3f} ms  "
        f"p99 {latency['p99']:7.3f} ms{cpu_text}{errors}"
    )


# -- summarising ---------------------------------------------------------------------------


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per target and scenario: medians over the rounds, sums of calls and errors."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        grouped.setdefault((run["target"], run["scenario"]), []).append(run)
    for (target, scenario), group in grouped.items():
        reports = [g["report"] for g in group if "failed" not in g["report"]]
        failures = [g["report"]["failed"] for g in group if "failed" in g["report"]]

        def median(
            get: Callable[[dict[str, Any]], float | None], reports: list[dict[str, Any]] = reports
        ) -> float | None:
            values = [v for v in (get(r) for r in reports) if v is not None]
            return statistics.median(values) if values else None

        summary.setdefault(target, {})[scenario] = {
            "rounds": len(group),
            "failures": failures,
            "calls": sum(r["calls"] for r in reports),
            "requestsSent": sum(r["requestsSent"] for r in reports),
            "errors": sum(r["errors"] for r in reports),
            "errorSamples": [s for r in reports for s in r["errorSamples"]][:5],
            "p50Ms": median(lambda r: r["latencyMs"]["p50"]),
            "p99Ms": median(lambda r: r["latencyMs"]["p99"]),
            "throughput": median(lambda r: r["throughput"]),
            "proxyCpuMsPerCall": median(lambda r: r["cpuMsPerCall"].get("proxy")),
            "upstreamCpuMsPerCall": median(lambda r: r["cpuMsPerCall"].get("upstream")),
            "loadgenCpuMsPerCall": median(lambda r: r["loadgenCpuMsPerCall"]),
            "upstreamHandshakes": sum(g["upstreamHandshakes"] for g in group),
            "upstreamCalls": sum(g["upstreamCalls"] for g in group),
            "upstreamLists": sum(g["upstreamLists"] for g in group),
        }
    return summary


def _get(summary: dict[str, Any], target: str, scenario: str, key: str) -> float | None:
    value = summary.get(target, {}).get(scenario, {}).get(key)
    return None if value is None else float(value)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x" if a / b >= 0.1 else f"{a / b:.2g}x"


def table(summary: dict[str, Any], rss: dict[str, dict[str, float | None]]) -> list[str]:
    """The printed table: one row per figure, one column per target, then gateway/peer."""
    rows: list[tuple[str, dict[str, float | None], int]] = []

    def row(label: str, scenario: str, key: str, digits: int = 2) -> None:
        rows.append((label, {t: _get(summary, t, scenario, key) for t in TARGETS}, digits))

    row("tools/call p50, c=1 (ms)", "call_c1", "p50Ms", 3)
    row("tools/call p99, c=1 (ms)", "call_c1", "p99Ms", 3)
    direct_p50 = _get(summary, "direct", "call_c1", "p50Ms")
    added = {
        t: (None if v is None or direct_p50 is None or t == "direct" else v - direct_p50)
        for t, v in rows[0][1].items()
    }
    rows.append(("added p50 over direct, c=1 (ms)", added, 3))
    row("throughput, c=16 (calls/s)", "call_c16", "throughput", 0)
    row("throughput, c=64 (calls/s)", "call_c64", "throughput", 0)
    off = _get(summary, AUDIT_OFF, "call_c16", "throughput")
    rows.append(("throughput, c=16, audit log off", {"gateway": off}, 0))
    row("tools/call p50, c=16 (ms)", "call_c16", "p50Ms", 2)
    row("proxy CPU per call, c=1 (ms)", "call_c1", "proxyCpuMsPerCall", 3)
    row("proxy CPU per call, c=16 (ms)", "call_c16", "proxyCpuMsPerCall", 3)
    row("upstream CPU per call, c=16 (ms)", "call_c16", "upstreamCpuMsPerCall", 3)
    row("loadgen CPU per call, c=16 (ms)", "call_c16", "loadgenCpuMsPerCall", 3)
    row("tools/list p50, 1 connection (ms)", "list_1", "p50Ms", 3)
    row("tools/list p99, 1 connection (ms)", "list_1", "p99Ms", 3)
    row("tools/list p50, 10 connections (ms)", "list_10", "p50Ms", 3)
    row("tools/list p99, 10 connections (ms)", "list_10", "p99Ms", 3)
    rows.append(
        ("peak RSS, 1 connection (MiB)", {t: rss.get(t, {}).get("call") for t in TARGETS}, 1)
    )
    rows.append(
        ("peak RSS, 10 connections (MiB)", {t: rss.get(t, {}).get("list10") for t in TARGETS}, 1)
    )
    row("errors, c=64", "call_c64", "errors", 0)
    handshakes = {
        t: sum(v.get("upstreamHandshakes", 0) for v in summary[t].values())
        if t in summary
        else None
        for t in TARGETS
    }
    rows.append(("upstream handshakes while measuring", {t: v for t, v in handshakes.items()}, 0))
    # A proxy that serves tools/list from a catalog forwards none; FastMCP asks every upstream.
    rows.append(
        (
            "upstream tools/list per tools/list, 10 conn.",
            {t: _per_request(summary, t, "list_10", "upstreamLists") for t in TARGETS},
            1,
        )
    )

    width = max(len(label) for label, _, _ in rows)
    lines = [f"{'':{width}}  {'direct':>10}  {'peer':>10}  {'gateway':>10}  {'gateway/peer':>12}"]
    for label, values, digits in rows:
        cells = "  ".join(f"{_fmt(values.get(t), digits):>10}" for t in TARGETS)
        ratio = _ratio(values.get("gateway"), values.get("peer"))
        lines.append(f"{label:{width}}  {cells}  {ratio:>12}")
    return lines


def verdicts(summary: dict[str, Any]) -> list[str]:
    """The issue's targets, checked when the gateway was measured; the peer's figures too."""
    lines = []
    direct = _get(summary, "direct", "call_c1", "p50Ms")
    direct_throughput = _get(summary, "direct", "call_c16", "throughput")
    for name in ("peer", "gateway"):
        if name not in summary:
            continue
        p50 = _get(summary, name, "call_c1", "p50Ms")
        added = None if p50 is None or direct is None else p50 - direct
        cpu = _get(summary, name, "call_c16", "proxyCpuMsPerCall")
        throughput = _ratio(_get(summary, name, "call_c16", "throughput"), direct_throughput)
        lines.append(
            f"{name}: adds {_fmt(added, 3)} ms at p50 (c=1), spends {_fmt(cpu, 3)} ms CPU per "
            f"call (c=16); its throughput at c=16 is {throughput} of direct"
        )
    if "gateway" not in summary:
        lines.append("gateway: not measured (--targets left it out)")
        return lines
    gateway_p50 = _get(summary, "gateway", "call_c1", "p50Ms")
    audit_ratio = _ratio_value(
        _get(summary, "gateway", "call_c16", "throughput"),
        _get(summary, AUDIT_OFF, "call_c16", "throughput"),
    )
    checks: list[tuple[str, float | None, Callable[[float], bool]]] = [
        (
            "added latency at p50 over direct <= 1.5 ms (c=1)",
            None if gateway_p50 is None or direct is None else gateway_p50 - direct,
            lambda v: v <= 1.5,
        ),
        (
            "gateway CPU per tools/call <= 1.0 ms (c=16)",
            _get(summary, "gateway", "call_c16", "proxyCpuMsPerCall"),
            lambda v: v <= 1.0,
        ),
        (
            "throughput at c=16 >= 3 times the peer's",
            _ratio_value(
                _get(summary, "gateway", "call_c16", "throughput"),
                _get(summary, "peer", "call_c16", "throughput"),
            ),
            lambda v: v >= 3.0,
        ),
        (
            "tools/list over 10 connections <= 5 ms p50",
            _get(summary, "gateway", "list_10", "p50Ms"),
            lambda v: v <= 5.0,
        ),
        (
            "activity log costs <= 15% of throughput at c=16 (% lost, on vs off)",
            None if audit_ratio is None else 100 * (1 - audit_ratio),
            lambda v: v <= 15.0,
        ),
        (
            "zero errors at c=64",
            _get(summary, "gateway", "call_c64", "errors"),
            lambda v: v == 0,
        ),
    ]
    lines.append("gateway targets:")
    for label, value, ok in checks:
        verdict = "n/a" if value is None else ("PASS" if ok(value) else "FAIL")
        lines.append(f"  [{verdict}] {label}: {_fmt(value, 3)}")
    return lines


def _per_request(summary: dict[str, Any], target: str, scenario: str, key: str) -> float | None:
    """Upstream requests per request sent, over every run (warm-up included)."""
    forwarded = _get(summary, target, scenario, key)
    sent = _get(summary, target, scenario, "requestsSent")
    return None if forwarded is None or not sent else forwarded / sent


def _ratio_value(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


# -- main ----------------------------------------------------------------------------------


def build_targets(
    wanted: Sequence[str],
    *,
    processes: Processes,
    logs: Path,
    upstream_base: str,
    args: argparse.Namespace,
    out: TextIO,
) -> list[Target]:
    def urls(prefix: str, count: int) -> list[str]:
        return [f"{upstream_base}/mcp/{prefix}{i}" for i in range(count)]

    def paths(prefix: str, count: int) -> list[str]:
        return [f"/mcp/{prefix}{i}" for i in range(count)]

    targets: list[Target] = []
    for name in wanted:
        if name == "direct":
            direct = Part(urls("direct", 1), [], paths("direct", 1))
            targets.append(
                Target(
                    "direct",
                    {"call": direct, "list1": direct},
                    notes=["no 10-connection list: a client talks to one server"],
                )
            )
        elif name == "peer":
            python = ensure_peer_venv(out)
            one_url, one_pid = start_peer(
                processes, logs, python, urls("peer", 1), name="peer", args=args
            )
            many_url, many_pid = start_peer(
                processes,
                logs,
                python,
                urls("peermany", args.connections),
                name="peer-many",
                args=args,
            )
            one = Part([one_url], [one_pid], paths("peer", 1))
            many = Part([many_url], [many_pid], paths("peermany", args.connections))
            targets.append(Target("peer", {"call": one, "list1": one, "list10": many}))
        elif name == AUDIT_OFF:
            gateway = gateway_target.start_gateway(
                urls("gwoff", 1),
                processes=args.gateway_processes,
                data_dir=logs / "gateway-gwoff",
                database_url=args.database_url,
                redis_url=args.redis_url,
                extra_env={"GATEWAY_AUDIT_ENABLED": "false"},
            )
            processes.gateway_pids += gateway.pids
            off = Part(gateway.mcp_urls, gateway.pids, paths("gwoff", 1), gateway.bearer_token)
            targets.append(Target(AUDIT_OFF, {"call": off}))
        elif name == "gateway":
            # Two deployments, like the peer's: one connection, and --connections of them.
            deployed: list[Part] = []
            for prefix, count in (("gw", 1), ("gwmany", args.connections)):
                gateway = gateway_target.start_gateway(
                    urls(prefix, count),
                    processes=args.gateway_processes,
                    # Under the run's log folder: removed after a successful run.
                    data_dir=logs / f"gateway-{prefix}",
                    database_url=args.database_url,
                    redis_url=args.redis_url,
                )
                processes.gateway_pids += gateway.pids
                deployed.append(
                    Part(gateway.mcp_urls, gateway.pids, paths(prefix, count), gateway.bearer_token)
                )
            targets.append(
                Target(
                    "gateway", {"call": deployed[0], "list1": deployed[0], "list10": deployed[1]}
                )
            )
    return targets


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--targets", default=",".join((*TARGETS, AUDIT_OFF)), help="e.g. direct,peer,gateway"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per run")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1 s")
    parser.add_argument("--tools", type=int, default=20, help="tools per upstream")
    parser.add_argument("--connections", type=int, default=10, help="for the tools/list figure")
    parser.add_argument("--protocol-version", default="2025-11-25", help="the loadgen's era")
    parser.add_argument(
        "--peer-sse",
        action="store_true",
        help="FastMCP answers in SSE (its default) rather than JSON (its fastest)",
    )
    parser.add_argument(
        "--peer-stateless", action="store_true", help="FastMCP without front sessions"
    )
    parser.add_argument("--gateway-processes", type=int, default=gateway_target.DEFAULT_PROCESSES)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 1.0, 0.3
    unknown = set(args.targets.split(",")) - {*TARGETS, AUDIT_OFF}
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = parse_args(argv)
    wanted = [t for t in (*TARGETS, AUDIT_OFF) if t in args.targets.split(",")]
    processes = Processes()
    logs = Path(tempfile.mkdtemp(prefix="mcp-bench-logs-"))
    load_before = os.getloadavg()
    started_at = datetime.now(UTC)
    try:
        upstream_port, upstream_pid = start_upstream(processes, logs, args.tools)
        upstream_base = f"http://127.0.0.1:{upstream_port}"
        targets = build_targets(
            wanted,
            processes=processes,
            logs=logs,
            upstream_base=upstream_base,
            args=args,
            out=out,
        )
        print(
            f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f}; "
            f"{args.rounds} round(s) of {args.duration:g} s (+{args.warmup:g} s warm-up) per run",
            file=out,
        )
        if load_before[0] > 0.5 * (os.cpu_count() or 1):
            print("note: the machine is busy with other work; the figures will be noisy", file=out)
        runs = measure(
            targets,
            upstream_port=upstream_port,
            upstream_pid=upstream_pid,
            args=args,
            out=out,
        )
        rss: dict[str, dict[str, float | None]] = {}
        for target in targets:
            for part_name, part in target.parts.items():
                if part.pids and part_name in ("call", "list10"):
                    rss.setdefault(target.name, {})[part_name] = peak_rss_mb(part.pids)
        final_stats = upstream_stats(upstream_port)
    finally:
        processes.stop()
    summary = summarise(runs)
    lines = table(summary, rss)
    print("", file=out)
    print("\n".join(lines), file=out)
    print("", file=out)
    print("\n".join(verdicts(summary)), file=out)
    result = {
        "meta": {
            "startedAt": started_at.isoformat(),
            "cpus": os.cpu_count(),
            "loadAverageBefore": load_before,
            "loadAverageAfter": os.getloadavg(),
            "python": platform.python_version(),
            "peerRequirements": _pins(),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "gatewayPath": "postgres+redis" if args.database_url and args.redis_url else "embedded",
            "upstream": {"stats": final_stats},
            "notes": {t.name: t.notes for t in targets if t.notes},
        },
        "summary": summary,
        "peakRssMiB": rss,
        "table": lines,
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str))
    shown = args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output
    print(f"\nWrote {shown}", file=out)
    shutil.rmtree(logs, ignore_errors=True)
    failed = any(
        s["failures"] or s["errors"]
        for by_scenario in summary.values()
        for s in by_scenario.values()
    )
    return 1 if failed else 0


def _pins() -> list[str]:
    return [
        line.strip()
        for line in PEER_REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


if __name__ == "__main__":
    sys.exit(main())
