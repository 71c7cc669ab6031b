"""Shared fixtures. Each test gets two organisations with members of every role, to prove isolation."""

from __future__ import annotations

import os

import pytest

from controlplane.actors import Actor
from controlplane.choices import Role
from controlplane.services.tokens import api_token_create
from tests.factories import MembershipFactory, OrganisationFactory, UserFactory

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """The test databases, dropped only once the embedded task workers have handed back the connections they keep
    between jobs (controlplane/embedded_tasks.py; PostgreSQL refuses to drop a database in use)."""
    yield
    from controlplane import embedded_tasks

    embedded_tasks.wait_connections_closed(embedded_tasks.IDLE_CLOSE_SECONDS + 30)


@pytest.fixture
def org_a(db):
    return OrganisationFactory(team_name="alpha", display_name="Alpha")


@pytest.fixture
def org_b(db):
    return OrganisationFactory(team_name="bravo", display_name="Bravo")


@pytest.fixture
def admin_a(org_a):
    return MembershipFactory(organisation=org_a, user=UserFactory(email="admin@alpha.test"), role=Role.SUPER_ADMIN).user


@pytest.fixture
def reader_a(org_a):
    return MembershipFactory(organisation=org_a, user=UserFactory(email="reader@alpha.test"), role=Role.READ_ONLY).user


@pytest.fixture
def admin_b(org_b):
    return MembershipFactory(organisation=org_b, user=UserFactory(email="admin@bravo.test"), role=Role.SUPER_ADMIN).user


def make_token(organisation, grants=None, **kwargs):
    """A raw API token for `organisation` (all resource groups editable unless `grants` says otherwise)."""
    from controlplane.choices import TOKEN_RESOURCES

    grants = grants or {resource.value: "edit" for resource in TOKEN_RESOURCES}
    _, raw = api_token_create(organisation=organisation, name="test token", grants=grants, actor=Actor.cli(), **kwargs)
    return raw


@pytest.fixture
def token_a(org_a):
    return make_token(org_a)


@pytest.fixture
def token_b(org_b):
    return make_token(org_b)


@pytest.fixture
async def fresh_hub():
    """A new per-process hub for this test's event loop (the hub is a process singleton), and an empty edge
    route table (the database is new for each test, without the events that would refresh it)."""
    from dataplane.hub import reset_hub_for_tests
    from edge.app import edge_application
    from edge.routes import RouteTable

    await reset_hub_for_tests()
    edge_application.routes = RouteTable()
    yield
    await reset_hub_for_tests()
