"""factory_boy factories for the gateway's models."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from connections.models import AuthType, Connection, Transport
from oauth.models import Membership, Organization, Role

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def saved(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MEMBER


class ConnectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Connection

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Server {n}")
    slug = factory.Sequence(lambda n: f"server-{n}")
    server_url = factory.Sequence(lambda n: f"https://mcp{n}.example.com/mcp")
    transport = Transport.STREAMABLE_HTTP
    auth_type = AuthType.NONE


class EndpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "endpoints.Endpoint"

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Endpoint {n}")
    slug = factory.Sequence(lambda n: f"endpoint-{n}")
