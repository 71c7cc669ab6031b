"""factory_boy factories for the core models."""

from __future__ import annotations

import factory

from controlplane.choices import Role, ZoneStatus
from controlplane.models import Membership, Organisation, User, Zone

DEFAULT_PASSWORD = "correct-horse-battery-9"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("email",)

    email = factory.Sequence(lambda n: f"user{n}@example.org")
    password = factory.PostGenerationMethodCall("set_password", DEFAULT_PASSWORD)


class OrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organisation

    team_name = factory.Sequence(lambda n: f"team-{n}")
    display_name = factory.Sequence(lambda n: f"Team {n}")
    require_2fa = False


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organisation = factory.SubFactory(OrganisationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.ADMIN


class ZoneFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Zone

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"zone{n}.example.com")
    status = ZoneStatus.ACTIVE
