"""`make run` on a busy machine: ports that are taken."""

from __future__ import annotations

import socket

import pytest

from gateway_project import run


@pytest.fixture
def taken_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_it_moves_a_default_port_that_is_taken_and_tells_the_children(
    taken_port, monkeypatch, capsys
):
    monkeypatch.delenv("GATEWAY_DEMO_PORT", raising=False)

    port = run.port_choose("GATEWAY_DEMO_PORT", taken_port, "127.0.0.1")

    assert port != taken_port
    assert taken_port < port <= taken_port + run.PORT_SEARCH_SPAN
    # The settings of the supervisor and of every child read the moved port.
    assert run.os.environ["GATEWAY_DEMO_PORT"] == str(port)
    assert f"Port {taken_port} is taken; using {port}" in capsys.readouterr().out


def test_it_keeps_a_default_port_that_is_free(monkeypatch):
    monkeypatch.delenv("PORT", raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = int(sock.getsockname()[1])

    assert run.port_choose("PORT", free, "127.0.0.1") == free


def test_it_refuses_an_explicit_port_that_is_taken_naming_the_variable(taken_port, monkeypatch):
    monkeypatch.setenv("GATEWAY_DEMO_PORT", str(taken_port))

    with pytest.raises(SystemExit, match=f"Port {taken_port} .*GATEWAY_DEMO_PORT.* is taken"):
        run.port_choose("GATEWAY_DEMO_PORT", 8765, "127.0.0.1")


def test_it_does_not_move_the_web_port_away_from_a_configured_public_url(taken_port, monkeypatch):
    monkeypatch.delenv("PORT", raising=False)

    with pytest.raises(SystemExit, match="set PORT to a free port"):
        run.port_choose("PORT", taken_port, "127.0.0.1", movable=False)
