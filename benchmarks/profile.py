"""Profile the gateway under load: where a ``tools/call`` spends its CPU.

Deploys the gateway like the benchmark does (``gateway_target.start_gateway``, one daphne
by default, Postgres + Redis when ``DATABASE_URL`` / ``REDIS_URL`` are set) in front of the
benchmark upstream, drives it with the load generator, samples the daphne with py-spy
(``pip install -e '.[dev]'`` installs it) and prints where the time goes: the share of
samples per area (daphne/twisted, the transport, the engine, the upstream client, JSON, the
event loop, …) and the busiest functions, by own time and by inclusive time.

```sh
.venv/bin/python benchmarks/profile.py                       # tools/call, c=16, 10 s
.venv/bin/python benchmarks/profile.py --mode list --concurrency 1
.venv/bin/python benchmarks/profile.py --svg profile.svg     # also a flame graph
```
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(REPO))

from benchmarks import gateway_target  # noqa: E402

# Areas, first match wins, tested against each frame's "function (file)" text.
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("upstream client (connections/)", ("(connections/",)),
    ("transport (endpoints/transport.py)", ("(endpoints/transport.py",)),
    ("engine (endpoints/mcp/, provider.py)", ("(endpoints/mcp/", "(endpoints/provider.py")),
    ("MCP SDK (mcp/, mcp_types/)", ("(mcp/", "(mcp_types/")),
    ("pydantic", ("(pydantic",)),
    ("httpx2/httpcore2/h11", ("(httpx2/", "(httpcore2/", "(h11/")),
    ("anyio", ("(anyio/",)),
    ("channels/asgiref", ("(channels/", "(asgiref/")),
    ("daphne", ("(daphne/",)),
    ("twisted", ("(twisted/", "(zope/")),
    ("json", ("(json/", "orjson")),
    ("django (db, cache, signing)", ("(django/", "(psycopg", "(redis/", "(sqlite3/")),
    ("asyncio event loop", ("(asyncio/", "(selectors.py", "(concurrent/", "(threading.py")),
)


LOOP = AREAS[-1][0]


def area_of(frame: str) -> str | None:
    for name, needles in AREAS:
        if any(needle in frame for needle in needles):
            return name
    return None


def summarise(collapsed: Path, top: int) -> list[str]:
    """Report lines from py-spy's collapsed stacks (``frame;frame;… count``)."""
    total = 0
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        total += count
        if not frames:
            continue
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        # The innermost frame of a library or of our code gets the sample; the event
        # loop's own frames only when nothing else is on the stack (select, scheduling).
        found = [area_of(frame) for frame in reversed(frames)]
        named = [a for a in found if a is not None and a != LOOP]
        areas[named[0] if named else (LOOP if LOOP in found else "other")] += count
    if not total:
        return ["no samples"]
    lines = [
        f"{total} samples",
        "",
        "share of samples by area (innermost frame of a library or of our code):",
    ]
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in areas.most_common()]
    lines += ["", f"top {top} by own time:"]
    lines += [f"  {100 * n / total:5.1f} %  {frame}" for frame, n in own.most_common(top)]
    lines += ["", f"top {top} by inclusive time:"]
    lines += [f"  {100 * n / total:5.1f} %  {frame}" for frame, n in inclusive.most_common(top)]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=["call", "list"], default="call")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0, help="sampled seconds")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--processes", type=int, default=1, help="daphne processes")
    parser.add_argument("--protocol-version", default="2025-11-25")
    parser.add_argument("--upstream-sse", action="store_true", help="upstream answers in SSE")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--svg", type=Path, help="also write a flame graph here")
    parser.add_argument("--collapsed", type=Path, help="keep py-spy's collapsed stacks here")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    args = parser.parse_args(argv)

    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        print("py-spy is not installed: pip install -e '.[dev]'", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gateway-profile-"))
    children: list[subprocess.Popen[bytes]] = []
    gateway_pids: list[int] = []
    try:
        upstream = subprocess.Popen(  # noqa: S603 (our own script)
            [sys.executable, str(BENCH / "upstream.py"), "--port", "0"]
            + (["--sse"] if args.upstream_sse else []),
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        children.append(upstream)
        assert upstream.stdout is not None
        port = int(json.loads(upstream.stdout.readline())["port"])
        gateway = gateway_target.start_gateway(
            [f"http://127.0.0.1:{port}/mcp/gw0"],
            processes=args.processes,
            data_dir=work / "gateway",
            database_url=args.database_url,
            redis_url=args.redis_url,
        )
        gateway_pids = gateway.pids
        env = {**os.environ, "LOADGEN_BEARER": gateway.bearer_token}
        command = [sys.executable, str(BENCH / "loadgen.py"), "--json", "--mode", args.mode]
        command += ["--concurrency", str(args.concurrency), "--warmup", "2"]
        command += ["--duration", str(args.duration + 2), "--protocol-version"]
        command += [args.protocol_version, "--watch", "proxy=" + ",".join(map(str, gateway.pids))]
        for url in gateway.mcp_urls:
            command += ["--url", url]
        loadgen = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)  # noqa: S603
        children.append(loadgen)
        time.sleep(2.5)
        collapsed = args.collapsed or work / "profile.txt"
        record = [py_spy, "record", "--pid", str(gateway.pids[0]), "--nonblocking"]
        record += ["--rate", str(args.rate)]
        subprocess.run(  # noqa: S603 (py-spy from the virtualenv)
            [
                *record,
                "--duration",
                str(int(args.duration)),
                "--format",
                "raw",
                "-o",
                str(collapsed),
            ],
            check=True,
            capture_output=True,
        )
        if args.svg:
            subprocess.run(  # noqa: S603
                [*record, "--duration", "5", "--output", str(args.svg)],
                check=True,
                capture_output=True,
            )
        out, _ = loadgen.communicate(timeout=args.duration + 60)
        report = json.loads(out)
        cpu = report["cpuMsPerCall"].get("proxy")
        print(
            f"{args.mode} c={args.concurrency}: {report['throughput']:,.0f}/s, "
            f"p50 {report['latencyMs']['p50']:.3f} ms, errors {report['errors']}, "
            f"gateway CPU {cpu or float('nan'):.3f} ms/request (py-spy's sampling included)"
        )
        print("\n".join(summarise(collapsed, args.top)))
    finally:
        gateway_target.stop_processes(gateway_pids)
        for child in children:
            if child.poll() is None:
                child.terminate()
                child.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
