"""stdio upstreams: a command the gateway runs on its own host, with its secrets as
environment variables, allowed only when the operator sets GATEWAY_ALLOW_STDIO."""

from __future__ import annotations

import json
import logging
import sys
import sysconfig
import time
from pathlib import Path

import anyio
import pytest

from connections.models import CatalogEntry, CatalogKind, Connection
from connections.services import (
    connection_check_health,
    connection_create,
    connection_update,
    upstream_target_for,
)
from connections.upstream import UpstreamError, UpstreamTarget, catalog_fetch, upstream_session
from tests.connections.test_encryption import raw_column

URL = "/api/mcp-connections"
SECRET = "env-secret-5f1c9a7e"
DEMO = ["-m", "connections.demo.upstream", "stdio"]
ENV_SERVER = ["-m", "tests.upstreams.env_server"]


def _time_server() -> str:
    """The console script of the PyPI package mcp-server-time, next to this interpreter."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / "mcp-server-time"
        if candidate.exists():
            return str(candidate)
    pytest.fail("mcp-server-time is not installed: run make install", pytrace=False)


@pytest.fixture
def stdio_on(settings):
    settings.GATEWAY_ALLOW_STDIO = True
    return settings


@pytest.fixture
def stdio_off(settings):
    settings.GATEWAY_ALLOW_STDIO = False
    return settings


@pytest.fixture
def admin_client(client, admin):
    client.force_login(admin.user)
    return client


def stdio_connection(org, **fields) -> Connection:
    values = {"name": "Local", "transport": "stdio", "command": sys.executable, "args": DEMO}
    return connection_create(organization=org, **{**values, **fields})


def call(target: UpstreamTarget, tool: str, arguments: dict) -> list:
    async def run() -> list:
        async with upstream_session(target) as client:
            result = await client.call_tool(tool, arguments)
            assert not result.is_error, result
            return result.content

    return anyio.run(run)


# --- reaching stdio servers ----------------------------------------------------------


def test_a_check_of_the_demo_server_over_stdio_stores_its_catalog(org, stdio_on):
    connection = stdio_connection(org)

    check = connection_check_health(connection=connection)

    assert check.ok, check.error
    connection.refresh_from_db()
    assert connection.status == "active"
    assert connection.server_url == ""
    assert connection.server_name == "acme-orders"
    assert connection.protocol_version == "2026-07-28"
    tools = set(
        CatalogEntry.objects.filter(connection=connection, kind=CatalogKind.TOOL).values_list(
            "key", flat=True
        )
    )
    assert tools == {"get_order_status", "check_inventory", "create_quote"}
    assert CatalogEntry.objects.filter(connection=connection, kind=CatalogKind.PROMPT).count() == 1


def test_the_env_secret_reaches_the_child_and_the_gateways_own_environment_does_not(
    org, stdio_on, monkeypatch
):
    monkeypatch.setenv("GATEWAY_SECRET_KEY", "the-gateways-own-secret")
    connection = stdio_connection(org, args=ENV_SERVER, env={"SERVICE_TOKEN": SECRET})
    target = upstream_target_for(connection=connection)

    checked = call(target, "check_env", {"name": "SERVICE_TOKEN", "expected": SECRET})
    names = call(target, "inherited", {})

    assert json.loads(checked[0].text) == {"set": True, "matches": True, "length": len(SECRET)}
    received = {item.text for item in names}
    assert "SERVICE_TOKEN" in received
    assert "PATH" in received
    assert "GATEWAY_SECRET_KEY" not in received
    assert "DJANGO_SETTINGS_MODULE" not in received


def test_a_missing_executable_is_reported_clearly(org, stdio_on):
    connection = stdio_connection(org, command="no-such-mcp-server-xyz", args=[])

    check = connection_check_health(connection=connection)

    assert not check.ok
    assert check.error_kind == "unreachable"
    assert check.error == "Could not start 'no-such-mcp-server-xyz': command not found."
    connection.refresh_from_db()
    assert connection.status == "error"


def test_a_server_that_dies_at_once_is_explained_with_its_secrets_masked(org, stdio_on, caplog):
    caplog.set_level(logging.DEBUG)
    connection = stdio_connection(
        org, args=[*ENV_SERVER, "--crash", "SERVICE_TOKEN"], env={"SERVICE_TOKEN": SECRET}
    )

    check = connection_check_health(connection=connection)

    assert check.error_kind == "exited"
    assert "exited before completing the MCP handshake" in check.error
    assert "fatal: cannot log in with SERVICE_TOKEN=***" in check.error
    assert SECRET not in check.error
    assert SECRET not in caplog.text


def test_a_silent_server_hits_the_connect_timeout(stdio_on):
    target = UpstreamTarget(
        url="",
        transport="stdio",
        command=sys.executable,
        args=("-c", "import time; time.sleep(60)"),
        connect_timeout=1,
    )
    started = time.monotonic()

    with pytest.raises(UpstreamError) as error:
        anyio.run(catalog_fetch, target)

    assert error.value.kind == "timeout"
    assert "did not answer within 1 s" in error.value.message
    assert time.monotonic() - started < 10


def test_mcp_server_time_from_pypi_lists_its_tools_and_answers_a_call(org, stdio_on):
    connection = stdio_connection(
        org, name="Time", command=_time_server(), args=["--local-timezone", "UTC"]
    )

    check = connection_check_health(connection=connection)

    assert check.ok, check.error
    connection.refresh_from_db()
    assert connection.server_name == "mcp-time"
    tools = {
        entry.key: entry.definition
        for entry in CatalogEntry.objects.filter(connection=connection, kind=CatalogKind.TOOL)
    }
    assert set(tools) == {"get_current_time", "convert_time"}
    assert tools["get_current_time"]["inputSchema"]["required"] == ["timezone"]
    assert set(tools["convert_time"]["inputSchema"]["properties"]) == {
        "source_timezone",
        "time",
        "target_timezone",
    }

    content = call(
        upstream_target_for(connection=connection), "get_current_time", {"timezone": "UTC"}
    )

    answer = json.loads(content[0].text)
    assert answer["timezone"] == "UTC"
    assert answer["datetime"].startswith(str(time.gmtime().tm_year))


def test_the_pool_key_tells_credentials_apart_without_holding_them():
    def target(**env: str) -> UpstreamTarget:
        return UpstreamTarget(url="", transport="stdio", command="srv", args=("-v",), env=env)

    same = target(API_KEY=SECRET)

    assert same.pool_key == target(API_KEY=SECRET).pool_key
    assert same.pool_key != target(API_KEY="other").pool_key
    assert hash(same.pool_key) == hash(target(API_KEY=SECRET).pool_key)
    assert SECRET not in repr(same.pool_key)
    assert SECRET not in repr(same)


# --- the operator's switch -----------------------------------------------------------


def test_the_api_refuses_stdio_naming_the_setting_while_it_is_off(admin, stdio_off):
    response = admin.api().post(
        URL,
        {"name": "Local", "transport": "stdio", "command": "mcp-server-time"},
        format="json",
    )

    assert response.status_code == 400
    body = response.json()
    assert "GATEWAY_ALLOW_STDIO=true" in body["error"]
    assert "GATEWAY_ALLOW_STDIO=true" in body["details"]["transport"][0]
    assert not Connection.objects.exists()


def test_the_form_explains_and_greys_out_stdio_while_it_is_off(admin_client, stdio_off):
    page = admin_client.get("/connections/new").content.decode()

    assert 'value="stdio" disabled' in page
    assert "GATEWAY_ALLOW_STDIO=true" in page
    assert 'id="stdio-disabled"' in page
    assert 'name="command"' not in page

    response = admin_client.post(
        "/connections/new",
        {"name": "Local", "transport": "stdio", "auth_type": "none", "command": "x"},
    )

    assert response.status_code == 200
    assert "GATEWAY_ALLOW_STDIO=true" in response.context["form"].errors["transport"][0]
    assert not Connection.objects.exists()


def test_a_stored_stdio_connection_stops_running_once_the_operator_turns_stdio_off(org, settings):
    settings.GATEWAY_ALLOW_STDIO = True
    connection = stdio_connection(org)
    settings.GATEWAY_ALLOW_STDIO = False

    check = connection_check_health(connection=connection)

    assert not check.ok
    assert check.error_kind == "disabled"
    assert "GATEWAY_ALLOW_STDIO" in check.error
    connection.refresh_from_db()
    assert connection.status == "error"
    with pytest.raises(UpstreamError) as error:
        upstream_target_for(connection=connection)
    assert error.value.kind == "disabled"


def test_while_off_a_stdio_connection_can_be_renamed_but_not_pointed_elsewhere(org, settings):
    settings.GATEWAY_ALLOW_STDIO = True
    connection = stdio_connection(org)
    settings.GATEWAY_ALLOW_STDIO = False

    connection_update(connection=connection, name="Renamed")
    with pytest.raises(Exception) as error:
        connection_update(connection=connection, command="/bin/sh")

    assert Connection.objects.get(pk=connection.pk).name == "Renamed"
    assert "GATEWAY_ALLOW_STDIO" in str(error.value)
    assert Connection.objects.get(pk=connection.pk).command == sys.executable


# --- API, UI and secrets ----------------------------------------------------------------


def test_the_api_creates_a_stdio_connection_and_shows_only_the_env_names(admin, stdio_on):
    created = admin.api().post(
        URL,
        {
            "name": "Time",
            "transport": "stdio",
            "command": "mcp-server-time",
            "args": ["--local-timezone", "UTC"],
            "env": {"API_KEY": SECRET, "REGION": "eu-west-9"},
        },
        format="json",
    )

    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["transport"] == "stdio"
    assert body["command"] == "mcp-server-time"
    assert body["args"] == ["--local-timezone", "UTC"]
    assert body["serverUrl"] == ""
    assert body["envSet"] is True
    assert body["envNames"] == ["API_KEY", "REGION"]
    assert "env" not in body
    stored = Connection.objects.get(pk=body["id"])
    assert stored.env == {"API_KEY": SECRET, "REGION": "eu-west-9"}
    assert SECRET not in raw_column(stored.pk)
    responses = [
        created,
        admin.api().get(URL),
        admin.api().get(f"{URL}/{stored.pk}"),
        admin.api().patch(f"{URL}/{stored.pk}", {"name": "Clock"}, format="json"),
    ]
    for response in responses:
        assert SECRET.encode() not in response.content
        assert b"eu-west-9" not in response.content


def test_patching_env_replaces_it_and_an_empty_object_clears_it(admin, stdio_on):
    connection = stdio_connection(admin.organization, env={"A_KEY": SECRET})

    replaced = admin.api().patch(
        f"{URL}/{connection.pk}", {"env": {"B_KEY": "other-value"}}, format="json"
    )
    cleared = admin.api().patch(f"{URL}/{connection.pk}", {"env": {}}, format="json")

    assert replaced.json()["envNames"] == ["B_KEY"]
    assert cleared.json()["envSet"] is False
    assert Connection.objects.get(pk=connection.pk).credential is None


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"transport": "stdio"}, "command", "Give the command"),
        ({"transport": "stdio", "command": "bin/server"}, "command", "absolute path"),
        ({"transport": "stdio", "command": "x", "args": "--flag"}, "args", ""),
        ({"transport": "stdio", "command": "x", "args": [{"a": 1}]}, "args", ""),
        ({"transport": "stdio", "command": "x", "env": {"1ABC": "v"}}, "env", "not a valid"),
        ({"transport": "stdio", "command": "x", "env": {"": "v"}}, "env", "not a valid"),
        ({"transport": "stdio", "command": "x", "env": {"PATH": "/tmp"}}, "env", "cannot be set"),
        ({"transport": "stdio", "command": "x", "env": {"LD_PRELOAD": "/x.so"}}, "env", "cannot"),
        ({"transport": "stdio", "command": "x", "env": {"A": {"b": 1}}}, "env", ""),
        ({"transport": "stdio", "command": "x", "env": ["A=1"]}, "env", ""),
        (
            {"transport": "stdio", "command": "x", "serverUrl": "https://a.example.com"},
            "serverUrl",
            "no URL",
        ),
        ({"transport": "stdio", "command": "x", "authType": "bearer"}, "authType", "environment"),
        ({"transport": "stdio", "command": "x", "token": "t"}, "token", "environment"),
        ({"serverUrl": "https://a.example.com", "command": "x"}, "command", "Only stdio"),
        ({"serverUrl": "https://a.example.com", "env": {"A": "1"}}, "env", "Only stdio"),
        ({"transport": "sse"}, "serverUrl", "Give the server's URL"),
    ],
)
def test_invalid_stdio_input_answers_400_with_a_message_per_field(
    admin, stdio_on, fields, field, message
):
    response = admin.api().post(URL, {"name": "Local", **fields}, format="json")

    assert response.status_code == 400, response.json()
    details = response.json()["details"]
    assert field in details, details
    assert message in " ".join(details[field])
    assert not Connection.objects.exists()


def test_too_many_or_too_long_arguments_and_variables_are_refused(admin, stdio_on):
    from connections import services

    too_many_args = ["a"] * (services.ARGS_MAX + 1)
    too_long_value = "v" * (services.ENV_VALUE_MAX + 1)
    too_many_vars = {f"V{i}": "x" for i in range(services.ENV_MAX + 1)}

    for extra, field in [
        ({"args": too_many_args}, "args"),
        ({"env": {"A": too_long_value}}, "env"),
        ({"env": too_many_vars}, "env"),
    ]:
        response = admin.api().post(
            URL, {"name": "Local", "transport": "stdio", "command": "x", **extra}, format="json"
        )
        assert response.status_code == 400
        assert field in response.json()["details"]


def test_switching_transports_drops_what_only_the_old_one_used(admin, stdio_on):
    http = connection_create(
        organization=admin.organization,
        name="Was HTTP",
        server_url="https://a.example.com/mcp",
        auth_type="bearer",
        token="tok-1234",
    )

    as_stdio = admin.api().patch(
        f"{URL}/{http.pk}",
        {"transport": "stdio", "command": "mcp-server-time", "env": {"K": "v1"}},
        format="json",
    )
    needs_url = admin.api().patch(f"{URL}/{http.pk}", {"transport": "sse"}, format="json")
    back = admin.api().patch(
        f"{URL}/{http.pk}",
        {"transport": "sse", "serverUrl": "https://b.example.com/sse"},
        format="json",
    )

    assert as_stdio.status_code == 200, as_stdio.json()
    assert as_stdio.json()["authType"] == "none"
    assert as_stdio.json()["tokenSet"] is False
    assert as_stdio.json()["serverUrl"] == ""
    assert needs_url.status_code == 400
    assert "serverUrl" in needs_url.json()["details"]
    assert back.status_code == 200
    assert back.json()["command"] == "" and back.json()["args"] == []
    assert back.json()["envSet"] is False
    assert Connection.objects.get(pk=http.pk).credential is None


def test_the_ui_creates_a_stdio_connection_and_never_shows_the_env_values(
    admin_client, admin, stdio_on
):
    response = admin_client.post(
        "/connections/new",
        {
            "name": "Time",
            "transport": "stdio",
            "auth_type": "none",
            "server_url": "https://left.over.example.com",  # hidden field of the other kind
            "command": "mcp-server-time",
            "args": "--local-timezone\nEurope/Paris\n",
            "env": f"API_KEY={SECRET}\n\nREGION = eu",
        },
    )

    connection = Connection.objects.get(organization=admin.organization)
    assert response.status_code == 302, response.context["form"].errors
    assert connection.command == "mcp-server-time"
    assert connection.args == ["--local-timezone", "Europe/Paris"]
    assert connection.server_url == ""
    assert connection.env == {"API_KEY": SECRET, "REGION": "eu"}
    detail = admin_client.get(f"/connections/{connection.pk}").content.decode()
    edit = admin_client.get(f"/connections/{connection.pk}/edit").content.decode()
    assert "mcp-server-time --local-timezone Europe/Paris" in detail
    assert "API_KEY" in detail and "REGION" in detail
    for html in (detail, edit, admin_client.get("/connections/").content.decode()):
        assert SECRET not in html

    # Editing with a blank environment box keeps the stored variables.
    kept = admin_client.post(
        f"/connections/{connection.pk}/edit",
        {
            "name": "Time",
            "transport": "stdio",
            "auth_type": "none",
            "command": "mcp-server-time",
            "args": "",
            "env": "",
        },
    )
    assert kept.status_code == 302
    connection.refresh_from_db()
    assert connection.env == {"API_KEY": SECRET, "REGION": "eu"}
    assert connection.args == []


def test_a_malformed_env_line_is_explained_in_the_form(admin_client, stdio_on):
    response = admin_client.post(
        "/connections/new",
        {
            "name": "X",
            "transport": "stdio",
            "auth_type": "none",
            "command": "x",
            "env": "NO_EQUALS_SIGN",
        },
    )

    assert "Line 1: write 'NAME=value'." in response.context["form"].errors["env"]
