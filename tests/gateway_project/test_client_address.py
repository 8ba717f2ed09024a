"""The client's address: the TCP peer unless a trusted proxy forwarded the request."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from gateway_project.client_address import (
    client_address,
    client_address_from,
    client_address_of_scope,
    trusted_proxy_networks,
)
from gateway_project.throttling import AnonRateThrottle, UserRateThrottle
from tests.gateway_project.test_settings import GOOD_SECRET, load

PROXIES = trusted_proxy_networks(["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"], name="TEST")


def test_it_ignores_forwarded_for_when_no_proxy_is_trusted():
    assert client_address_from(peer="198.51.100.9", forwarded_for=["1.2.3.4"], trusted=()) == (
        "198.51.100.9"
    )


def test_it_ignores_forwarded_for_from_a_peer_that_is_not_a_trusted_proxy():
    address = client_address_from(
        peer="198.51.100.9", forwarded_for=["1.2.3.4, 10.0.0.5"], trusted=PROXIES
    )
    assert address == "198.51.100.9"


def test_it_takes_the_address_the_trusted_proxy_appended():
    # The client sent "6.6.6.6" itself; the proxy appended what it saw: 203.0.113.7.
    address = client_address_from(
        peer="10.0.0.2", forwarded_for=["6.6.6.6, 203.0.113.7"], trusted=PROXIES
    )
    assert address == "203.0.113.7"


def test_it_skips_every_trusted_hop_from_the_right():
    address = client_address_from(
        peer="10.0.0.2",
        forwarded_for=["6.6.6.6, 203.0.113.7", "192.0.2.1, 10.1.2.3"],
        trusted=PROXIES,
    )
    assert address == "203.0.113.7"


def test_it_stops_at_an_unreadable_entry_and_keeps_the_last_trusted_hop():
    address = client_address_from(
        peer="10.0.0.2", forwarded_for=["203.0.113.7, unknown, 10.9.9.9"], trusted=PROXIES
    )
    assert address == "10.9.9.9"


def test_it_reads_entries_with_ports_and_brackets():
    assert (
        client_address_from(peer="10.0.0.2", forwarded_for=["203.0.113.7:5555"], trusted=PROXIES)
        == "203.0.113.7"
    )
    assert (
        client_address_from(
            peer="2001:db8::1", forwarded_for=["[2001:db9::7]:443"], trusted=PROXIES
        )
        == "2001:db9::7"
    )


def test_it_matches_an_ipv4_mapped_peer_against_ipv4_ranges():
    address = client_address_from(
        peer="::ffff:10.0.0.2", forwarded_for=["203.0.113.7"], trusted=PROXIES
    )
    assert address == "203.0.113.7"
    assert client_address_from(peer="::ffff:198.51.100.9", forwarded_for=[], trusted=()) == (
        "198.51.100.9"
    )


def test_a_trusted_peer_without_a_header_is_the_client():
    assert client_address_from(peer="10.0.0.2", forwarded_for=[], trusted=PROXIES) == "10.0.0.2"


def test_it_never_reads_x_real_ip(settings):
    settings.GATEWAY_TRUSTED_PROXIES = ["127.0.0.1"]
    request = RequestFactory().get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_REAL_IP="6.6.6.6")
    assert client_address(request) == "127.0.0.1"


def test_a_request_and_a_scope_agree(settings):
    settings.GATEWAY_TRUSTED_PROXIES = ["127.0.0.1"]
    request = RequestFactory().get(
        "/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7"
    )
    scope = {
        "type": "http",
        "client": ("127.0.0.1", 50000),
        "headers": [(b"x-forwarded-for", b"6.6.6.6"), (b"X-Forwarded-For", b"203.0.113.7")],
    }
    assert client_address(request) == client_address_of_scope(scope) == "203.0.113.7"
    settings.GATEWAY_TRUSTED_PROXIES = []
    assert client_address(request) == client_address_of_scope(scope) == "127.0.0.1"
    assert client_address_of_scope({"type": "http", "client": None, "headers": []}) == ""


def test_the_api_rate_limits_key_on_the_client_address(settings):
    settings.GATEWAY_TRUSTED_PROXIES = []
    request = RequestFactory().get(
        "/api/x", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4"
    )
    assert AnonRateThrottle().get_ident(request) == "127.0.0.1"
    assert UserRateThrottle().get_ident(request) == "127.0.0.1"
    settings.GATEWAY_TRUSTED_PROXIES = ["127.0.0.0/8"]
    assert AnonRateThrottle().get_ident(request) == "1.2.3.4"


def test_a_malformed_trusted_proxy_list_stops_the_settings_naming_it():
    result = load(
        {"GATEWAY_SECRET_KEY": GOOD_SECRET, "GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8,nginx"}
    )
    assert result.returncode != 0
    assert "GATEWAY_TRUSTED_PROXIES" in result.stderr
    assert "'nginx'" in result.stderr


def test_a_trusted_proxy_list_of_addresses_and_ranges_loads():
    result = load(
        {"GATEWAY_SECRET_KEY": GOOD_SECRET, "GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8, ::1, [fd00::1]"}
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("value", ["10.0.0.0/33", "10.0.0.1/8/1", ""])
def test_trusted_proxy_networks_refuses_what_is_no_network(value):
    if not value:
        assert trusted_proxy_networks([value], name="X") == ()
        return
    with pytest.raises(ValueError, match="X must list"):
        trusted_proxy_networks([value], name="X")
