"""Toggles, aliases and endpoint edits publish ``endpoint.changed`` through the channel layer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers, get_channel_layer
from django.db import transaction

from endpoints import services
from endpoints.events import (
    connection_endpoints_changed_publish,
    endpoint_changed_publish,
    endpoint_group,
)
from tests.endpoints.conftest import enable


@pytest.fixture
def listen(settings) -> Iterator[Any]:
    """Subscribe a fresh in-memory channel to an endpoint's group; returns a receiver."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    layer = get_channel_layer()

    def subscribe(endpoint_id):
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(endpoint_group(endpoint_id), channel)

        def received() -> list[dict[str, Any]]:
            async def drain() -> list[dict[str, Any]]:
                messages = []
                while True:
                    try:
                        messages.append(await asyncio.wait_for(layer.receive(channel), 0.05))
                    except TimeoutError:
                        return messages

            return async_to_sync(drain)()

        return received

    yield subscribe
    channel_layers.backends.clear()


def event(endpoint, *kinds: str) -> dict[str, Any]:
    endpoint_id = endpoint if isinstance(endpoint, str) else str(endpoint.pk)
    return {"type": "endpoint.changed", "endpoint_id": endpoint_id, "kinds": list(kinds)}


def test_a_toggle_publishes_once_the_transaction_commits(
    endpoint, orders, listen, django_capture_on_commit_callbacks
):
    received = listen(endpoint.pk)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        enable(endpoint, orders, "search")
    assert received() == []  # nothing before the commit

    for callback in callbacks:
        callback()
    assert received() == [event(endpoint, "tools")]


def test_an_alias_a_prompt_and_a_resource_publish_their_lists(
    endpoint, orders, listen, django_capture_on_commit_callbacks
):
    received = listen(endpoint.pk)

    with django_capture_on_commit_callbacks(execute=True):
        services.endpoint_catalog_update(
            endpoint=endpoint,
            changes=[
                services.CatalogChange(
                    connection_id=orders.pk, kind="tool", key="search", alias="find"
                ),
                services.CatalogChange(
                    connection_id=orders.pk, kind="prompt", key="customer_reply", enabled=True
                ),
                services.CatalogChange(
                    connection_id=orders.pk,
                    kind="resource_template",
                    key="orders://{order_id}",
                    enabled=True,
                ),
            ],
        )

    assert received() == [event(endpoint, "tools", "resources", "prompts")]


def test_a_change_that_changes_nothing_publishes_nothing(
    endpoint, orders, listen, django_capture_on_commit_callbacks
):
    enable(endpoint, orders, "search")
    received = listen(endpoint.pk)

    with django_capture_on_commit_callbacks(execute=True):
        enable(endpoint, orders, "search")

    assert received() == []


def test_a_rolled_back_change_publishes_nothing(endpoint, orders, listen):
    received = listen(endpoint.pk)

    with pytest.raises(RuntimeError), transaction.atomic():
        enable(endpoint, orders, "search")
        raise RuntimeError("rolled back")

    assert received() == []


def test_endpoint_edits_publish_what_they_change(
    endpoint, orders, member, listen, django_capture_on_commit_callbacks
):
    received = listen(endpoint.pk)

    with django_capture_on_commit_callbacks(execute=True):
        services.endpoint_update(endpoint=endpoint, description="For the sales team.")
        services.endpoint_update(endpoint=endpoint, connection_ids=[orders.pk])
        services.endpoint_update(endpoint=endpoint, member_ids=[member.user.pk])
        services.endpoint_update(endpoint=endpoint, name=endpoint.name)  # no change
        services.endpoint_update(endpoint=endpoint, prefix_names=False)

    assert received() == [
        event(endpoint, "endpoint"),
        event(endpoint, "tools", "resources", "prompts"),
        event(endpoint, "access"),
        event(endpoint, "tools", "resources", "prompts"),
    ]

    endpoint_id = str(endpoint.pk)
    with django_capture_on_commit_callbacks(execute=True):
        services.endpoint_delete(endpoint=endpoint)
    assert received() == [event(endpoint_id, "deleted")]


def test_a_catalog_change_can_be_published_to_every_endpoint_of_a_connection(
    org, endpoint, orders, listen, django_capture_on_commit_callbacks
):
    other = services.endpoint_create(organization=org, name="Support", connection_ids=[orders.pk])
    first, second = listen(endpoint.pk), listen(other.pk)

    with django_capture_on_commit_callbacks(execute=True):
        connection_endpoints_changed_publish(connection_id=orders.pk, kinds=["tools"])

    assert first() == [event(endpoint, "tools")]
    assert second() == [event(other, "tools")]


def test_it_also_publishes_from_a_thread_that_runs_an_event_loop(endpoint, listen):
    received = listen(endpoint.pk)

    async def async_caller() -> None:
        endpoint_changed_publish(endpoint_id=endpoint.pk, kinds=["tools"])
        await asyncio.sleep(0.05)  # the send is scheduled on this loop

    asyncio.run(async_caller())

    assert received() == [event(endpoint, "tools")]
