from __future__ import annotations

import pytest
from django.test import override_settings

from controlplane.actors import Actor
from controlplane.services.zones import zone_create, zone_mark_verified
from tunnels.services import tunnel_create


@pytest.fixture
def fast_heartbeats():
    with override_settings(CONNECTOR_HEARTBEAT_SECONDS=1, TUNNEL_HEALTH_NOTIFY_DELAY_SECONDS=1):
        yield


@pytest.fixture
def tunnel_a(org_a, admin_a):
    return tunnel_create(organisation=org_a, name="home-lab", actor=Actor(user=admin_a))


@pytest.fixture
def zone_a(org_a):
    zone = zone_create(organisation=org_a, name="example.com", actor=Actor.cli())
    return zone_mark_verified(zone=zone, actor=Actor.cli())
