"""Fixtures shared by the edge's in-process tests (test_edge_streams.py, test_peers.py)."""

from __future__ import annotations

import pytest

from controlplane.actors import Actor
from controlplane.services.zones import zone_create, zone_mark_verified
from tunnels.services import tunnel_config_update, tunnel_create

# app.example.com → an origin the protocol-level peer stands in for; anything else 404.
CONFIG = {
    "ingress": [{"hostname": "app.example.com", "service": "http://localhost:3001"}, {"service": "http_status:404"}]
}


@pytest.fixture
def routed_tunnel(org_a):
    """A tunnel of org A routing app.example.com (a verified zone of org A's)."""
    zone_mark_verified(zone=zone_create(organisation=org_a, name="example.com", actor=Actor.cli()), actor=Actor.cli())
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    tunnel_config_update(tunnel=tunnel, config=CONFIG, actor=Actor.cli())
    return tunnel
