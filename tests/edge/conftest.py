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


@pytest.fixture(autouse=True)
def origin_errors():
    """The process's origin error recorder, empty for each test (it is a process singleton)."""
    from edge.errors import recorder

    recorder.__init__()  # type: ignore[misc]
    yield recorder
    recorder.__init__()  # type: ignore[misc]


async def recorded_errors(recorder, tunnel) -> list:
    """Write what the recorder holds now and read the tunnel's rows back, newest first."""
    from asgiref.sync import sync_to_async

    from tunnels.selectors import origin_error_list

    await recorder.flush()
    return await sync_to_async(origin_error_list)(tunnel=tunnel)
