"""Hostile input against a live daphne: malformed and over-deep JSON, invalid Unicode,
huge bodies (declared and streamed), query-string tokens, made-up session ids.

Every answer is a 4xx in the documented shape, never a 5xx or a traceback, and the
gateway keeps serving afterwards.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time

import httpx

from endpoints import transport
from gateway_project.strictjson import MAX_DEPTH
from tests.audit.conftest import call_tool, wait_for_records
from tests.helpers import free_port, wait_for_port
from tests.transport.conftest import ROOT, _database_env

CALL = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"%s","arguments":{}}}'


def nested(depth: int) -> bytes:
    return (
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":'
        + b"[" * depth
        + b"]" * depth
        + b"}}"
    )


def _assert_rpc_error(response: httpx.Response, status: int, code: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code, response.text
    assert "Traceback" not in response.text


def test_malformed_json_answers_jsonrpc_errors_never_500(live_gateway, served_endpoint, admin):
    served = served_endpoint()
    gateway = live_gateway()
    url = gateway.endpoint_url(served.slug)
    headers = {"Authorization": f"Bearer {admin.token}", "Content-Type": "application/json"}

    def post(body: bytes) -> httpx.Response:
        return httpx.post(url, content=body, headers=headers, timeout=30)

    _assert_rpc_error(post(nested(1100)), 400, -32600)
    _assert_rpc_error(post(nested(MAX_DEPTH + 1)), 400, -32600)
    _assert_rpc_error(post(CALL % b"x\\ud800y"), 400, -32700)  # escaped lone surrogate
    _assert_rpc_error(post(CALL % "x\ud800y".encode("utf-8", "surrogatepass")), 400, -32700)
    _assert_rpc_error(post(CALL % b"x\xffy"), 400, -32700)  # not UTF-8
    _assert_rpc_error(
        post(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":NaN}}'), 400, -32700
    )
    _assert_rpc_error(post(b'{"jsonrpc":'), 400, -32700)
    assert "deeper than 64 levels" in post(nested(1100)).json()["error"]["message"]

    # Still serving, and the activity log still storing: a tool call after all that.
    called = call_tool(url, admin.token, "paged__tool_00")
    assert called.status_code == 200, called.text
    assert "error" not in called.json(), called.text
    records = wait_for_records(1, method="tools/call", status="success")
    assert [record.name for record in records] == ["paged__tool_00"]


def test_the_legacy_messages_url_refuses_deep_json(live_gateway, served_endpoint, admin):
    served = served_endpoint()
    gateway = live_gateway()
    headers = {"Authorization": f"Bearer {admin.token}"}
    with httpx.stream(
        "GET", f"{gateway.endpoint_url(served.slug)}/sse", headers=headers, timeout=30
    ) as stream:
        lines = stream.iter_lines()
        endpoint = next(line for line in lines if line.startswith("data:"))[5:].strip()
        url = endpoint if endpoint.startswith("http") else f"{gateway.base}{endpoint}"

        deep = httpx.post(url, content=nested(1100), headers=headers, timeout=30)
        surrogate = httpx.post(url, content=CALL % b"x\\ud800", headers=headers, timeout=30)

    assert deep.status_code == 400
    assert "deeper than 64 levels" in deep.json()["error"]
    assert surrogate.status_code == 400
    assert "invalid Unicode" in surrogate.json()["error"]


# --- huge bodies ----------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _post_huge(port: int, path: str, total: int, *, chunked: bool) -> tuple[bytes, int]:
    """Send a POST of ``total`` body bytes until the server answers; (answer, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n".encode()
    )
    sock.setblocking(False)
    piece = b"[" * 65536
    pending = b""
    sent = 0
    answer = b""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            want_write = sent < total
            readable, writable, _ = select.select([sock], [sock] if want_write else [], [], 1.0)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                answer += data
                head, _, body = answer.partition(b"\r\n\r\n")
                length = [
                    int(h.split(b":")[1])
                    for h in head.split(b"\r\n")
                    if h.lower().startswith(b"content-length:")
                ]
                if length and len(body) >= length[0]:
                    break
            if writable and want_write:
                if not pending:
                    pending = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
                try:
                    count = sock.send(pending)
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    continue
                pending = pending[count:]
                sent += count
    finally:
        sock.close()
    return answer, sent


def test_a_huge_unauthenticated_body_is_refused_before_it_is_read(live_gateway, served_endpoint):
    served_endpoint()
    gateway = live_gateway(GATEWAY_MAX_BODY_BYTES="1048576", GATEWAY_MCP_MAX_BODY_BYTES="4194304")
    before = _rss_kib(gateway.process.pid)
    total = 300 * 1024 * 1024

    for path, chunked in [
        ("/mcp/team", False),
        ("/api/mcp-connections", False),
        ("/o/register/", True),
        ("/mcp/team", True),
    ]:
        answer, sent = _post_huge(gateway.port, path, total, chunked=chunked)

        assert answer.startswith(b"HTTP/1.1 413"), (path, chunked, answer[:200])
        assert b'"error":"The request body is too large' in answer
        assert sent < 64 * 1024 * 1024  # answered long before the client finished sending
    assert _rss_kib(gateway.process.pid) - before < 40 * 1024  # nothing like 300 MiB held
    # Still serving, and the cap leaves ordinary bodies alone.
    assert httpx.get(f"{gateway.base}/api/mcp-connections", timeout=30).status_code == 401
    registered = httpx.post(
        f"{gateway.base}/o/register/",
        json={"redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none"},
        timeout=30,
    )
    assert registered.status_code == 201, registered.text


# --- tokens in the URL, made-up sessions -------------------------------------------------------


def test_a_token_in_the_query_string_is_refused_and_never_logged(tmp_path, served_endpoint, admin):
    served = served_endpoint()
    port = free_port()
    access_log = tmp_path / "access.log"
    env = {
        **os.environ,
        **_database_env(),
        "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "GATEWAY_AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
        "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
    }
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    command += ["--access-log", str(access_log), "gateway_project.asgi:application"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=30)
        base = f"http://127.0.0.1:{port}/mcp/{served.slug}"
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}

        alone = httpx.post(f"{base}?access_token={admin.token}", json=body, timeout=30)
        both = httpx.post(
            f"{base}?access_token={admin.token}",
            json=body,
            headers={"Authorization": f"Bearer {admin.token}"},
            timeout=30,
        )
        callback = httpx.get(
            f"http://127.0.0.1:{port}/connections/oauth/callback?state=s&code=upstream-code-123",
            timeout=30,
        )
        time.sleep(0.5)  # the access log is written after the answer
    finally:
        process.terminate()
        process.wait(timeout=10)

    for answer in (alone, both):
        assert answer.status_code == 400
        assert "not accepted in the URL" in answer.json()["error"]
        assert 'error="invalid_request"' in answer.headers["www-authenticate"]
    assert callback.status_code < 500
    logged = access_log.read_text()
    assert "access_token=[masked]" in logged
    assert admin.token not in logged
    assert "upstream-code-123" not in logged


def test_made_up_session_ids_are_not_kept():
    transport._SESSION_CACHE.clear()
    for number in range(2000):
        assert transport.session_read(f"made-up-{number}-" + "x" * 13_000) is None
        assert transport.session_read(f"made-up-{number}") is None

    assert len(transport._SESSION_CACHE) == 0


def test_the_session_caches_are_bounded(monkeypatch):
    monkeypatch.setattr(transport, "_SESSION_CACHE", transport.LruCache(50))
    ids = [
        transport.session_create(
            transport.Session(
                endpoint_id="e", principal="p", protocol_version="2025-11-25", client={}
            )
        )
        for _ in range(120)
    ]
    for session_id in ids:
        assert transport.session_read(session_id) is not None

    assert len(transport._SESSION_CACHE) == 50
    assert transport.session_read(ids[0]) is not None  # evicted, verified again
    hub = transport.Hub()
    assert hub.ended_sessions.max_size == transport.SESSION_CACHE_SIZE


# --- errors daphne and twisted answer themselves ------------------------------------------------


def _raw_exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes; everything the server answers until it closes (or 10 s)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and b"content-length" not in answer.lower():
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    return answer


def test_protocol_level_errors_answer_json_on_machine_paths(live_gateway):
    gateway = live_gateway()

    def head_request(path: str, header: bytes) -> bytes:
        return (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n".encode()
            + header
            + b"\r\nConnection: close\r\n\r\n"
        )

    malformed = _raw_exchange(gateway.port, b"NOT A REQUEST LINE AT ALL\r\n\r\n")
    bad_name_api = _raw_exchange(gateway.port, head_request("/api/mcp-connections", b"X(bad): 1"))
    bad_value_mcp = _raw_exchange(gateway.port, head_request("/mcp/team", b"X-Bad: a\x0bb"))
    bad_value_page = _raw_exchange(gateway.port, head_request("/", b"X-Bad: a\x0bb"))

    for answer in (malformed, bad_name_api, bad_value_mcp):
        assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
        assert b"application/json" in answer.lower()
        assert b'{"error":' in answer
    assert b"Invalid header value" in bad_value_mcp
    assert bad_value_page.startswith(b"HTTP/1.1 400")
    assert b"text/html" in bad_value_page.lower()  # people's pages keep daphne's HTML page
