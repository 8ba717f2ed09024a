"""How the interop suite judges a check and reads its expected failures (the suite itself runs
in .ci/interop against live peers; these pin the rules that decide its verdict)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

from tests.interop.matrix import (
    CHECKS,
    CLIENTS,
    MIB,
    UPSTREAMS,
    Verdict,
    compare,
    judge,
    read_expected,
)
from tests.interop.wire import digest, expand, summarize

OWN = next(u for u in UPSTREAMS if u.name == "ts-stateful")
EVERYTHING = next(u for u in UPSTREAMS if u.name == "everything-http")
PY2 = next(c for c in CLIENTS if c.name == "py2-modern")
INSPECTOR = next(c for c in CLIENTS if c.name == "inspector")


def text(value: str, **extra) -> dict:
    return {"ok": True, "value": {"content": [{"type": "text", "text": value}], **extra}}


def test_it_passes_a_check_whose_gateway_answer_matches_the_direct_one():
    verdict = judge(OWN, PY2, "text", text("echo: hello"), text("echo: hello"), capable=True)

    assert verdict.status == "pass"


def test_it_fails_a_check_that_works_directly_and_not_through_the_gateway():
    broken = text("The server 'x' answered with an MCP protocol error.", isError=True)

    verdict = judge(OWN, PY2, "text", text("echo: hello"), broken, capable=True)

    assert verdict.status == "fail"
    assert "MCP protocol error" in verdict.detail


def test_it_skips_a_check_that_fails_directly_whatever_the_gateway_does():
    direct = {"ok": False, "error": "MCPError: Server-sent event exceeded the 1048576 byte limit."}

    verdict = judge(OWN, PY2, "big_result", direct, {"ok": False, "error": "x"}, capable=True)

    assert verdict.status == "skip"
    assert verdict.detail.startswith("fails directly")


def test_it_fails_a_gateway_answer_that_differs_from_the_direct_one():
    direct = {"ok": True, "value": {"structuredContent": {"n": 42}, "content": []}}
    gateway = {"ok": True, "value": {"structuredContent": {"n": 43}, "content": []}}

    verdict = judge(OWN, PY2, "structured", direct, gateway, capable=True)

    assert verdict.status == "fail"
    assert "answer differs" in verdict.detail


def test_it_wants_an_upstream_tool_error_as_is_error_on_both_sides():
    direct = text("deliberate failure", isError=True)

    assert judge(OWN, PY2, "error", direct, direct, capable=True).status == "pass"
    assert judge(OWN, PY2, "error", direct, text("fine"), capable=True).status == "fail"
    assert judge(OWN, PY2, "error", text("fine"), direct, capable=True).status == "skip"


def test_it_counts_a_call_that_ran_twice_upstream_as_a_failure():
    verdict = judge(OWN, PY2, "once", text("1"), text("2"), capable=True)

    assert verdict.status == "fail"
    assert verdict.detail == "the call ran 2 times upstream"


def test_it_fails_progress_that_does_not_reach_the_client():
    direct = {**text("done after 3 steps"), "progress": 3}
    gateway = {**text("done after 3 steps"), "progress": 0}

    verdict = judge(OWN, PY2, "progress", direct, gateway, capable=True)

    assert verdict.status == "fail"
    assert "no progress notification" in verdict.detail


def test_it_compares_tool_lists_by_name_and_definition_ignoring_the_toggled_extra_tool():
    direct = {"ok": True, "value": [{"name": "echo", "description": "a"}, {"name": "extra_tool"}]}
    same = {"ok": True, "value": [{"name": "echo", "description": "a"}]}
    changed = {"ok": True, "value": [{"name": "echo", "description": "b"}]}

    assert judge(OWN, PY2, "tools_list", direct, same, capable=True).status == "pass"
    verdict = judge(OWN, PY2, "tools_list", direct, changed, capable=True)
    assert verdict.status == "fail"
    assert verdict.detail == "tool echo differs in ['description']"


def test_list_changed_without_a_direct_trigger_is_judged_on_the_clients_capability():
    notified = {"ok": True, "value": "notified"}
    missed = {"ok": False, "error": "TimeoutError: "}

    assert judge(EVERYTHING, PY2, "list_changed", None, notified, capable=True).status == "pass"
    assert judge(EVERYTHING, PY2, "list_changed", None, missed, capable=True).status == "fail"
    assert judge(EVERYTHING, PY2, "list_changed", None, missed, capable=False).status == "skip"


def test_it_skips_what_a_client_cannot_do_and_says_why():
    verdict = judge(OWN, INSPECTOR, "big_arg", None, None, capable=False)

    assert verdict.status == "skip"
    assert "128 KiB" in verdict.detail


def test_long_strings_travel_as_digests_and_arguments_are_built_by_the_driver():
    built = expand({"data": {"$repeat": "y", "count": MIB}, "n": 1})

    assert len(built["data"]) == MIB
    assert summarize({"text": "y" * MIB, "short": "y"}) == {
        "text": digest("y" * MIB),
        "short": "y",
    }
    assert digest("a" * 300) != digest("a" * 301)


def test_an_expected_entry_covers_matching_failures_and_one_that_matches_none_is_stale(
    tmp_path: Path,
):
    path = tmp_path / "expected.txt"
    path.write_text(
        "# a comment\n"
        "ts-eventstore  *  text   # every client\n"
        "*  ts-sse  progress\n"
        "py1-sse  *  once\n"
    )
    verdicts = [
        Verdict("ts-eventstore", "py2-modern", "text", "fail"),
        Verdict("ts-stateful", "ts-sse", "progress", "fail"),
        Verdict("ts-stateful", "py1-sse", "progress", "fail"),
        Verdict("py1-sse", "py2-modern", "once", "pass"),
    ]

    unexpected, stale = compare(verdicts, read_expected(path))

    assert [(v.upstream, v.client, v.check) for v in unexpected] == [
        ("ts-stateful", "py1-sse", "progress")
    ]
    assert [(e.upstream, e.check, e.line) for e in stale] == [("py1-sse", "once", 4)]


def test_an_intermittent_entry_tolerates_its_failure_and_is_never_stale(tmp_path: Path):
    path = tmp_path / "expected.txt"
    path.write_text("everything-http  ts-sse  progress  intermittent\n")
    failing = [Verdict("everything-http", "ts-sse", "progress", "fail")]
    passing = [Verdict("everything-http", "ts-sse", "progress", "pass")]

    assert compare(failing, read_expected(path)) == ([], [])
    assert compare(passing, read_expected(path)) == ([], [])


def test_a_malformed_expected_entry_stops_the_run(tmp_path: Path):
    path = tmp_path / "expected.txt"
    path.write_text("ts-eventstore text\n")

    try:
        read_expected(path)
    except SystemExit as error:
        assert "want '<upstream> <client> <check> [intermittent]'" in str(error)
    else:
        raise AssertionError("a two-field entry was accepted")


def test_the_expected_failures_file_parses_and_names_known_upstreams_and_clients():
    entries = read_expected(Path(__file__).parent / "expected-failures.txt")
    upstreams = {u.name for u in UPSTREAMS}
    clients = {c.name for c in CLIENTS}

    assert entries
    for entry in entries:
        assert any(fnmatchcase(check, entry.check) for check in CHECKS), entry.check
        assert any(
            entry.matches(Verdict(u, c, entry.check, "fail")) for u in upstreams for c in clients
        ), f"line {entry.line} matches no upstream and client"
