"""Public names and resource URIs: valid, collision-free, reversible."""

from __future__ import annotations

from endpoints.naming import (
    PUBLIC_NAME,
    NameCandidate,
    assign_public_names,
    public_resource_uri,
    safe_name,
    split_public_resource_uri,
    template_pattern,
)


def names(*candidates: NameCandidate, prefix: bool) -> dict:
    return assign_public_names(candidates, prefix=prefix)


def test_it_prefixes_names_with_the_connection_slug_by_default():
    result = names(
        NameCandidate(1, "acme-orders", "search"),
        NameCandidate(2, "docs", "search"),
        prefix=True,
    )
    assert result == {1: "acme-orders__search", 2: "docs__search"}


def test_unprefixed_names_stay_bare_unless_two_servers_share_them():
    result = names(
        NameCandidate(1, "acme-orders", "search"),
        NameCandidate(2, "docs", "search"),
        NameCandidate(3, "acme-orders", "get_order_status"),
        prefix=False,
    )
    assert result == {1: "acme-orders__search", 2: "docs__search", 3: "get_order_status"}


def test_an_alias_wins_and_pushes_a_colliding_bare_name_back_to_its_prefix():
    result = names(
        NameCandidate(1, "acme-orders", "lookup", alias="find"),
        NameCandidate(2, "docs", "find"),
        prefix=False,
    )
    assert result == {1: "find", 2: "docs__find"}


def test_pathological_collisions_are_broken_deterministically_and_stay_valid():
    # slug "a" + tool "b__c" and slug "a__b" + tool "c" both prefix to "a__b__c".
    candidates = [NameCandidate(1, "a", "b__c"), NameCandidate(2, "a__b", "c")]
    first = assign_public_names(candidates, prefix=True)
    second = assign_public_names(list(reversed(candidates)), prefix=True)
    assert first == second
    assert len(set(first.values())) == 2
    assert first[1] == "a__b__c"
    assert first[2].startswith("a__b__c-")
    assert all(PUBLIC_NAME.match(name) for name in first.values())


def test_it_sanitises_names_that_upstreams_should_not_have_used():
    assert safe_name("get order/status!") == "get_order_status_"
    assert safe_name("") == "_"
    long_a, long_b = "x" * 200 + "a", "x" * 200 + "b"
    assert len(safe_name(long_a)) == 128
    assert safe_name(long_a) != safe_name(long_b)
    assert PUBLIC_NAME.match(safe_name(long_a))
    assert PUBLIC_NAME.match(safe_name("é" * 300))


def test_resource_uris_round_trip_through_the_gateway_prefix():
    public = public_resource_uri("acme-orders", "orders://ORD-1001")
    assert public == "mcp-gateway://acme-orders/orders://ORD-1001"
    assert split_public_resource_uri(public) == ("acme-orders", "orders://ORD-1001")
    assert split_public_resource_uri("orders://ORD-1001") is None
    assert split_public_resource_uri("mcp-gateway://acme-orders") is None


def test_a_client_expanding_a_rewritten_template_produces_a_uri_that_routes_back():
    template = public_resource_uri("acme-orders", "orders://{order_id}")
    expanded = template.replace("{order_id}", "ORD-1001")
    slug, upstream = split_public_resource_uri(expanded)
    assert slug == "acme-orders"
    assert template_pattern("orders://{order_id}").fullmatch(upstream)


def test_template_patterns_follow_rfc_6570_operators():
    assert template_pattern("orders://{order_id}").fullmatch("orders://ORD-1")
    assert not template_pattern("orders://{order_id}").fullmatch("orders://a/b")
    assert not template_pattern("orders://{order_id}").fullmatch("invoices://ORD-1")
    assert template_pattern("file:///{+path}").fullmatch("file:///a/b/c.txt")
    assert template_pattern("api://items{?page,size}").fullmatch("api://items?page=2&size=5")
    assert template_pattern("api://items{?page,size}").fullmatch("api://items")
    assert template_pattern("repo://{owner}{/path*}").fullmatch("repo://me/src/main.py")
    assert template_pattern("weird://{a").fullmatch("weird://{a")
