"""The benchmark harness itself: the load generator against the benchmark upstream.

Runs ``benchmarks/upstream.py`` on a free loopback port and the load generator for about a
second, so that ``make bench`` cannot rot silently: calls happen, nothing errs, and each
worker opens exactly one session.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.loadgen import HttpResponse, LoadConfig, LoadError, _json_rpc_response, run_load

UPSTREAM = Path(__file__).resolve().parents[2] / "benchmarks" / "upstream.py"


def _start_upstream(*extra: str) -> tuple[subprocess.Popen[bytes], str]:
    child = subprocess.Popen(
        [sys.executable, str(UPSTREAM), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert child.stdout is not None
    port = json.loads(child.stdout.readline())["port"]
    return child, f"http://127.0.0.1:{port}"


@pytest.fixture
def upstream() -> Iterator[str]:
    child, base = _start_upstream()
    yield base
    child.terminate()
    child.wait(timeout=10)


@pytest.fixture
def sse_upstream() -> Iterator[str]:
    child, base = _start_upstream("--sse")
    yield base
    child.terminate()
    child.wait(timeout=10)


def _stats(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/stats", timeout=5) as response:
        return json.load(response)


def _run(**kwargs) -> dict:
    return asyncio.run(run_load(LoadConfig(**kwargs)))


def test_it_runs_calls_without_errors_and_one_handshake_per_worker(upstream):
    report = _run(urls=[f"{upstream}/mcp/u0"], concurrency=4, duration=1.0, warmup=0.2)

    assert report["calls"] > 0
    assert report["errors"] == 0, report["errorSamples"]
    assert report["latencyMs"]["p50"] > 0
    stats = _stats(upstream)
    assert stats["initialize"] == 4
    assert stats["methods"]["notifications/initialized"] == 4
    assert stats["handshakesByPath"] == {"/mcp/u0": 4}
    # Every counted call reached the upstream (plus warm-up calls and the tool lookup).
    assert stats["toolsCall"] >= report["calls"]
    # The sessions were ended with DELETE.
    assert stats["openSessions"] == 0


def test_it_reads_sse_responses_and_lists_tools(sse_upstream):
    report = _run(
        urls=[f"{sse_upstream}/mcp/u0"], mode="list", concurrency=2, duration=0.5, warmup=0.1
    )

    assert report["calls"] > 0
    assert report["errors"] == 0, report["errorSamples"]
    assert _stats(sse_upstream)["toolsList"] >= report["calls"]


def test_it_speaks_the_stateless_revision_without_initialize(upstream):
    report = _run(
        urls=[f"{upstream}/mcp/u0"],
        concurrency=2,
        duration=0.5,
        warmup=0.1,
        protocol_version="2026-07-28",
    )

    assert report["calls"] > 0
    assert report["errors"] == 0, report["errorSamples"]
    stats = _stats(upstream)
    assert stats["initialize"] == 0
    assert stats["discover"] == 2


def test_it_counts_an_is_error_result_as_an_error(upstream):
    report = _run(
        urls=[f"{upstream}/mcp/u0"], tool="no_such_tool", concurrency=1, duration=0.3, warmup=0
    )

    assert report["calls"] == 0
    assert report["errors"] > 0
    assert "isError=True" in report["errorSamples"][0]


def test_it_measures_the_cpu_time_of_a_watched_process(upstream):
    pid = _stats(upstream)["pid"]

    report = _run(
        urls=[f"{upstream}/mcp/u0"], concurrency=2, duration=0.5, warmup=0.1, watch={"up": [pid]}
    )

    assert report["cpuSeconds"]["up"] > 0
    assert 0 < report["cpuMsPerCall"]["up"] < 10


def test_it_takes_the_response_out_of_an_sse_stream_with_priming_and_progress():
    body = (
        b"id: 0\ndata:\n\n"
        b": keep-alive\n\n"
        b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress",'
        b'"params":{"progressToken":1,"progress":1}}\n\n'
        b'event: message\r\ndata: {"jsonrpc":"2.0","id":7,\r\ndata: "result":{"ok":true}}\r\n\r\n'
    )
    response = HttpResponse(200, {"content-type": "text/event-stream"}, body, 0.0)

    assert _json_rpc_response(response, 7) == {"jsonrpc": "2.0", "id": 7, "result": {"ok": True}}


def test_it_refuses_an_sse_stream_without_the_response():
    body = b'event: message\ndata: {"jsonrpc":"2.0","id":6,"result":{}}\n\n'
    response = HttpResponse(200, {"content-type": "text/event-stream"}, body, 0.0)

    with pytest.raises(LoadError, match="without the response"):
        _json_rpc_response(response, 7)
