"""What callers send, read strictly on the Django side: the one JSON parser, the body cap
as an ASGI middleware, and errors in the documented ``{"error": ...}`` shape."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway_project import strictjson
from gateway_project.access_log import query_secrets_masked
from gateway_project.body_limit import BodyLimitMiddleware, body_cap_for
from gateway_project.lru import LruCache

API = "/api/mcp-connections"
LONE_ESCAPED = b'{"name": "x\\ud800y", "serverUrl": "https://example.com/mcp"}'
LONE_RAW = '{"name": "x\ud800y"}'.encode("utf-8", "surrogatepass")


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# --- the parser ------------------------------------------------------------------------


def test_it_parses_ordinary_json():
    assert strictjson.loads(b'{"a": [1, {"b": "\\ud83d\\ude00"}]}') == {"a": [1, {"b": "😀"}]}
    assert strictjson.loads(nested(strictjson.MAX_DEPTH)) is not None


@pytest.mark.parametrize("body", [LONE_ESCAPED, LONE_RAW, b'"\\udc00"', b"\xff"])
def test_it_refuses_invalid_unicode(body):
    with pytest.raises(strictjson.JsonRefused) as refused:
        strictjson.loads(body)
    assert "invalid Unicode" in str(refused.value)
    assert not refused.value.too_deep


@pytest.mark.parametrize("depth", [strictjson.MAX_DEPTH + 1, 1100, 5000])
def test_it_refuses_nesting_beyond_the_limit(depth):
    with pytest.raises(strictjson.JsonRefused) as refused:
        strictjson.loads(nested(depth))
    assert refused.value.too_deep
    assert f"deeper than {strictjson.MAX_DEPTH}" in str(refused.value)


def test_it_finds_depth_hidden_among_many_shallow_brackets():
    shallow = b"[" + b"[]," * 200 + b"[]]"
    assert strictjson.loads(shallow) is not None
    deep_object = b'{"a":' * 70 + b"1" + b"}" * 70
    with pytest.raises(strictjson.JsonRefused):
        strictjson.loads(deep_object)
    brackets_in_strings = json.dumps(["[" * 500]).encode()
    assert strictjson.loads(brackets_in_strings) == ["[" * 500]


@pytest.mark.parametrize("body", [b"NaN", b"[Infinity]", b"[1e400]", b"{", b""])
def test_it_refuses_what_is_not_json(body):
    with pytest.raises(strictjson.JsonRefused):
        strictjson.loads(body)


# --- the REST API ------------------------------------------------------------------------


@pytest.mark.parametrize("body", [nested(5000), LONE_ESCAPED, LONE_RAW])
def test_the_api_answers_400_to_hostile_json(admin, body):
    response = admin.api().post(API, data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"].startswith("The request body is not valid JSON")


def test_the_api_answers_a_multipart_body_without_boundary_in_its_shape(admin):
    response = admin.api().post(API, data=b"--x\r\n", content_type="multipart/form-data")

    assert 400 <= response.status_code < 500
    assert set(response.json()) == {"error"}


def test_the_api_answers_a_signed_in_multipart_body_without_boundary_in_its_shape(admin, client):
    client.force_login(admin.user)
    response = client.post(API, data=b"--x\r\n", content_type="multipart/form-data")

    assert 400 <= response.status_code < 500
    assert set(response.json()) == {"error"}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/o/token/", "/token"])
def test_the_token_endpoint_answers_a_multipart_body_without_boundary_in_json(client, path):
    response = client.post(path, data=b"--x\r\n", content_type="multipart/form-data")

    assert response.status_code == 400
    assert response["content-type"] == "application/json"
    assert "multipart" in response.json()["error"]


# --- OAuth registration -------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("body", [nested(5000), LONE_ESCAPED, LONE_RAW])
def test_registration_answers_400_to_hostile_json(client, body):
    response = client.post("/o/register/", data=body, content_type="application/json")

    assert response.status_code == 400
    answer = response.json()
    assert answer["error"] == "invalid_client_metadata"
    assert "not acceptable JSON" in answer["error_description"]


@pytest.mark.django_db
def test_registration_management_answers_400_to_deep_json(client):
    response = client.put(
        "/o/register/some-client/", data=nested(5000), content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"


# --- Django's error pages -----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/o/nothing-here/", "/.well-known/nothing", "/mcp/team/.well-known/nothing"]
)
def test_unknown_machine_paths_answer_json_404(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert response["content-type"] == "application/json"
    assert set(response.json()) == {"error"}


@pytest.mark.django_db
def test_unknown_pages_keep_the_html_404(client):
    response = client.get("/no-such-page")

    assert response.status_code == 404
    assert response["content-type"].startswith("text/html")


@pytest.mark.django_db
def test_a_disallowed_host_on_the_api_answers_json_400(client):
    response = client.get(API, HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert response.json() == {"error": "This host is not served here."}


# --- the body cap as ASGI middleware ------------------------------------------------------


def _run_capped(headers, chunks, path="/api/mcp-connections"):
    """Run the middleware over a fake app; what the app received and what was sent."""
    seen: list[bytes] = []
    sent: list[dict] = []
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    received = {"count": 0}

    async def receive():
        received["count"] += 1
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            seen.append(message["body"])
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    scope = {"type": "http", "path": path, "headers": headers}
    asyncio.run(BodyLimitMiddleware(app)(scope, receive, send))
    return seen, sent, received["count"]


def test_the_middleware_refuses_a_declared_length_over_the_cap_without_reading(settings):
    settings.GATEWAY_MAX_BODY_BYTES = 1024
    seen, sent, reads = _run_capped([(b"content-length", b"5000")], [b"x" * 5000])

    assert reads == 0 and seen == []
    assert sent[0]["status"] == 413
    assert "at most 1024 bytes" in json.loads(sent[1]["body"])["error"]


def test_the_middleware_stops_a_streamed_body_at_the_cap(settings):
    settings.GATEWAY_MAX_BODY_BYTES = 1024
    seen, sent, reads = _run_capped([], [b"x" * 600, b"x" * 600, b"x" * 600, b"x" * 600])

    assert reads == 2  # the third and fourth chunks are never read
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [413]
    assert b"".join(seen) == b"x" * 600


def test_the_middleware_passes_bodies_within_the_cap(settings):
    settings.GATEWAY_MAX_BODY_BYTES = 1024
    seen, sent, _ = _run_capped([(b"content-length", b"1000")], [b"x" * 1000])

    assert seen == [b"x" * 1000]
    assert sent[0]["status"] == 200


def test_mcp_routes_have_their_own_cap(settings):
    settings.GATEWAY_MAX_BODY_BYTES = 1024
    settings.GATEWAY_MCP_MAX_BODY_BYTES = 4096
    assert body_cap_for("/mcp/team") == 4096
    assert body_cap_for("/mcp/team/messages") == 4096
    assert body_cap_for("/mcp") == 4096
    assert body_cap_for("/mcp/team/.well-known/oauth-authorization-server") == 1024
    assert body_cap_for("/api/mcp-connections") == 1024
    assert body_cap_for("/o/register/") == 1024


# --- small pieces -------------------------------------------------------------------------


def test_the_access_log_masks_credentials_in_query_strings():
    assert query_secrets_masked("/mcp/team?access_token=s3cret&x=1") == (
        "/mcp/team?access_token=[masked]&x=1"
    )
    assert "abc" not in query_secrets_masked("/connections/oauth/callback?state=s&code=abc")
    assert query_secrets_masked("/mcp/team/messages?session_id=1") == (
        "/mcp/team/messages?session_id=1"
    )


def test_the_lru_cache_forgets_the_least_recently_used():
    cache: LruCache[str, int] = LruCache(2)
    cache["a"], cache["b"] = 1, 2
    assert cache.get("a") == 1  # "b" is now the oldest
    cache["c"] = 3
    assert len(cache) == 2
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3


def test_it_keeps_integers_beyond_64_bits_exact_when_asked():
    big = b'{"id": 100000000000000000000000000001}'
    assert strictjson.loads(big, exact_integers=True) == {"id": 10**29 + 1}


# --- strict field types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url,body,field",
    [
        ("/api/mcp-endpoints", {"name": "X", "slug": 0}, "slug"),
        ("/api/mcp-endpoints", {"name": "X", "piiFilter": 0}, "piiFilter"),
        ("/api/mcp-endpoints", {"name": "X", "prefixToolNames": "false"}, "prefixToolNames"),
        ("/api/mcp-endpoints", {"name": "X", "memberIds": ["7"]}, "memberIds"),
        ("/api/mcp-endpoints", {"name": "X", "maxAccessDuration": "3600"}, "maxAccessDuration"),
        ("/api/mcp-endpoints", {"name": 5}, "name"),
        ("/api/mcp-connections", {"name": "X", "slug": 0}, "slug"),
        ("/api/mcp-connections", {"name": "X", "args": [1]}, "args"),
        ("/api/mcp-connections", {"name": "X", "headers": {"X-A": 1}}, "headers"),
    ],
)
def test_values_of_the_wrong_json_type_are_refused(admin, url, body, field):
    response = admin.api().post(url, data=body, format="json")

    assert response.status_code == 400, response.json()
    assert field in response.json()["details"]


# --- methods and the schema ------------------------------------------------------------------


def test_a_method_the_api_does_not_serve_answers_405_whatever_the_role(member):
    traced = member.api().generic("TRACE", "/api/audit-policy")
    head = member.api().head("/api/mcp-connections")

    assert traced.status_code == 405
    assert traced.json() == {"error": "Method TRACE is not allowed here."}
    assert traced["Allow"] == "GET, PATCH"
    assert head.status_code == 200


def test_the_schema_documents_the_answers_as_they_are(admin):
    schema = admin.api().get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths, components = schema["paths"], schema["components"]["schemas"]

    def ok_schema(path, method="get"):
        return paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"]

    page = components[ok_schema("/api/audit-logs")["$ref"].rsplit("/", 1)[1]]
    assert set(page["properties"]) == {"records", "nextCursor", "quarantine"}
    events = components[ok_schema("/api/audit-events")["$ref"].rsplit("/", 1)[1]]
    assert events["properties"]["events"]["type"] == "array"
    for path in ("/api/mcp-connections", "/api/mcp-endpoints"):
        assert "$ref" in ok_schema(path)  # {"connections": [...]}, not a bare array
    for operations in paths.values():
        for method, operation in operations.items():
            assert {"401", "403"} <= set(operation["responses"]), (method, operation)
    assert components["PatchedEndpointToolsChangeRequest"]["required"] == ["tools"]
    slug = components["EndpointInRequest"]["properties"]["slug"]
    assert slug["type"] == "string"
