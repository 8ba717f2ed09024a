"""Shared fixtures: organisations, people with roles, and authenticated API clients."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from oauth.models import Membership, Organization, Role
from oauth.services import api_token_create
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Real hashing costs ~0.2 s a user; the tests are not about its strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _isolated_cache():
    """Throttle counters and cached lookups must not leak between tests."""
    _cache_clear()
    yield
    _cache_clear()


def _cache_clear() -> None:
    """Clear Django's cache keys only: on Redis, ``cache.clear()`` would FLUSHDB and drop
    the channel layer's groups of gateways sharing the database."""
    backend = getattr(cache, "_cache", None)
    if type(cache).__name__ != "RedisCache" or backend is None:
        cache.clear()
        return
    client = backend.get_client(write=True)
    keys = list(client.scan_iter(match=f"{cache.key_prefix}:{cache.version}:*"))
    if keys:
        client.delete(*keys)


@dataclass
class Person:
    membership: Membership
    token: str

    @property
    def user(self):
        return self.membership.user

    @property
    def organization(self) -> Organization:
        return self.membership.organization

    def api(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.token}")
        return client


def make_person(organization, role, username):
    membership = MembershipFactory(
        organization=organization, user=UserFactory(username=username), role=role
    )
    _, raw = api_token_create(organization=organization, user=membership.user, name="tests")
    return Person(membership=membership, token=raw)


@pytest.fixture
def org(db):
    return OrganizationFactory(name="Acme", slug="acme")


@pytest.fixture
def other_org(db):
    return OrganizationFactory(name="Globex", slug="globex")


@pytest.fixture
def admin(org) -> Person:
    return make_person(org, Role.ADMIN, "alice")


@pytest.fixture
def member(org) -> Person:
    return make_person(org, Role.MEMBER, "bob")


@pytest.fixture
def auditor(org) -> Person:
    return make_person(org, Role.AUDITOR, "carol")


@pytest.fixture
def other_admin(other_org) -> Person:
    return make_person(other_org, Role.ADMIN, "mallory")
