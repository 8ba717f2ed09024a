"""Regression tests for the protocol bugs the official conformance suite found (2026-07-28 wire).

Each test sends the raw request the suite sends (``.ci/conformance`` runs the suite itself)
to a live daphne federating the conformance fixture upstream with names unprefixed.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from connections.models import CatalogEntry
from connections.services import connection_check_health
from endpoints.services import endpoint_create, endpoint_entries_set_enabled
from tests.factories import ConnectionFactory
from tests.helpers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "regression", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


@dataclass
class Target:
    url: str
    token: str

    def post(self, method: str, params: dict, headers: dict | None = None):
        """POST one request with the headers a conforming client sends, changed by
        ``headers`` (a value of ``""`` drops that header)."""
        sent = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": MODERN,
            "Mcp-Method": method,
        }
        name = params.get("name") or params.get("uri")
        if name is not None:
            sent["Mcp-Name"] = name
        sent.update(headers or {})
        sent = {k: v for k, v in sent.items() if v != ""}
        body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
        return httpx.post(self.url, json=body, headers=sent, timeout=30)


@pytest.fixture
def fixture_endpoint(transactional_db, admin, live_gateway):
    """The conformance fixture upstream behind an endpoint with unprefixed names."""
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "tests.upstreams.conformance_server", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        connection = ConnectionFactory(
            organization=admin.organization,
            name="Fixture",
            slug="fixture",
            server_url=f"http://127.0.0.1:{port}/mcp",
        )
        check = connection_check_health(connection=connection)
        assert check.ok, check.error
        endpoint = endpoint_create(
            organization=admin.organization,
            name="Conformance",
            slug="conformance",
            connection_ids=[str(connection.pk)],
            prefix_names=False,
        )
        entries = CatalogEntry.objects.filter(connection=connection).values_list("pk", flat=True)
        endpoint_entries_set_enabled(endpoint=endpoint, entry_ids=list(entries), enabled=True)
        gateway = live_gateway()
        yield Target(url=gateway.endpoint_url("conformance"), token=admin.token)
    finally:
        # The gateway may still hold the upstream's session open (it stops later).
        upstream.terminate()
        try:
            upstream.wait(timeout=5)
        except subprocess.TimeoutExpired:
            upstream.kill()
            upstream.wait(timeout=5)


def test_it_rejects_a_modern_request_without_its_envelope_server_discover_included(
    fixture_endpoint,
):
    target = fixture_endpoint
    no_meta = target.post("server/discover", {})
    no_version = target.post(
        "server/discover",
        {"_meta": {k: v for k, v in META.items() if not k.endswith("protocolVersion")}},
    )
    no_capabilities = target.post(
        "tools/list",
        {"_meta": {k: v for k, v in META.items() if not k.endswith("clientCapabilities")}},
    )
    no_client_info = target.post(
        "server/discover",
        {"_meta": {k: v for k, v in META.items() if not k.endswith("clientInfo")}},
    )

    for refused in (no_meta, no_version, no_capabilities):
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == -32602
        assert refused.json()["id"] == 7
    assert "protocolVersion" in no_version.json()["error"]["message"]
    assert no_client_info.status_code == 200, no_client_info.text
    assert MODERN in no_client_info.json()["result"]["supportedVersions"]


def test_it_answers_initialize_in_a_2026_envelope_as_a_removed_method(fixture_endpoint):
    params = {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "regression", "version": "1"},
        "_meta": META,
    }

    answer = fixture_endpoint.post("initialize", params)

    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == -32601
    assert "mcp-session-id" not in answer.headers


def test_it_rejects_a_missing_version_or_name_header_and_a_malformed_name(fixture_endpoint):
    target = fixture_endpoint
    call = {"name": "test_simple_text", "arguments": {}, "_meta": META}
    encoded = "=?base64?" + base64.b64encode(b"test_simple_text").decode() + "?="

    no_version = target.post("tools/call", call, {"MCP-Protocol-Version": ""})
    no_name = target.post("tools/call", call, {"Mcp-Name": ""})
    # Unpadded base64 is malformed: the header must not be read leniently.
    bad_base64 = target.post("tools/call", call, {"Mcp-Name": "=?base64?dGVzdF9zaW1wbGVfdGV4dA?="})
    good_base64 = target.post("tools/call", call, {"Mcp-Name": encoded})

    for refused in (no_version, no_name, bad_base64):
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == -32020
    assert good_base64.status_code == 200, good_base64.text
    assert good_base64.json()["result"]["content"][0]["text"] == (
        "This is a simple text response for testing."
    )


def test_it_answers_an_upstreams_missing_capability_error_with_400(fixture_endpoint):
    answer = fixture_endpoint.post(
        "tools/call", {"name": "test_missing_capability", "arguments": {}, "_meta": META}
    )

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == -32021
    assert answer.json()["error"]["data"] == {"requiredCapabilities": {"sampling": {}}}
    assert answer.json()["id"] == 7


def test_it_checks_mcp_param_headers_against_x_mcp_header_arguments(fixture_endpoint):
    target = fixture_endpoint

    def call(arguments: dict, region: str | None = None):
        params = {"name": "test_x_mcp_header", "arguments": arguments, "_meta": META}
        return target.post("tools/call", params, {"Mcp-Param-Region": region or ""})

    hello_b64 = "=?base64?" + base64.b64encode(b"Hello").decode() + "?="
    matching = call({"region": "eu-west"}, "eu-west")
    encoded = call({"region": "Hello"}, hello_b64)
    absent_both = call({})
    missing = call({"region": "eu-west"})
    mismatched = call({"region": "eu-west"}, "us-east")
    bad_padding = call({"region": "Hello"}, "=?base64?SGVsbG8?=")
    bad_chars = call({"region": "Hello"}, "=?base64?SGVs!!!bG8=?=")
    header_only = call({}, "eu-west")

    assert matching.status_code == 200, matching.text
    assert matching.json()["result"]["content"][0]["text"] == "region=eu-west"
    assert encoded.status_code == 200, encoded.text
    assert absent_both.status_code == 200, absent_both.text
    for refused in (missing, mismatched, bad_padding, bad_chars, header_only):
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == -32020
        assert "Mcp-Param-Region" in refused.json()["error"]["message"]
