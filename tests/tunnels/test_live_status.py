"""Live status over the browser websocket: pushed within a second, only to the organisation's members."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from tests.tunnels.test_connector_endpoint import application, open_connector, receive
from tunnels.services import tunnel_token

pytestmark = [pytest.mark.django_db(transaction=True)]


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def watch(user, organisation):
    cookie = await sync_to_async(session_cookie)(user)
    comm = WebsocketCommunicator(
        application(),
        f"/ws/accounts/{organisation.id.hex}/tunnels/status",
        headers=[(b"cookie", cookie), (b"origin", b"http://testserver"), (b"host", b"testserver")],
    )
    connected, _ = await comm.connect()
    return comm, connected


async def next_json(comm, timeout=2.0):
    return json.loads(await comm.receive_from(timeout))


async def test_member_sees_connect_and_disconnect_live(fresh_hub, tunnel_a, admin_a, org_a):
    comm, connected = await watch(admin_a, org_a)
    assert connected
    snapshot = await next_json(comm)
    assert snapshot["type"] == "snapshot"
    assert [t["status"] for t in snapshot["tunnels"]] == ["inactive"]

    token = await sync_to_async(tunnel_token)(tunnel_a)
    started = time.monotonic()
    connector, _ = await open_connector(token, ha=2, index=0)
    assert (await receive(connector)).__class__.__name__ == "Welcome"
    update = await next_json(comm)
    assert time.monotonic() - started < 1.0
    assert update["type"] == "tunnel" and update["tunnel"]["status"] == "degraded"
    assert "1 of 2 connections" in update["tunnel"]["explanation"]

    second, _ = await open_connector(token, ha=2, index=1, connector_id=update["tunnel"]["connectors"][0]["id"])
    await receive(second)
    update = await next_json(comm)
    assert update["tunnel"]["status"] == "healthy"

    await connector.disconnect()
    await second.disconnect()
    update = await next_json(comm)
    while update["tunnel"]["status"] != "down":
        update = await next_json(comm)
    await comm.disconnect()


async def test_other_organisations_receive_nothing(fresh_hub, tunnel_a, admin_b, org_b, org_a):
    theirs, connected = await watch(admin_b, org_b)
    assert connected
    assert (await next_json(theirs))["tunnels"] == []
    token = await sync_to_async(tunnel_token)(tunnel_a)
    connector, _ = await open_connector(token)
    await receive(connector)
    await asyncio.sleep(0.5)
    assert await theirs.receive_nothing(0.5)
    await connector.disconnect()
    await theirs.disconnect()


async def test_non_members_and_anonymous_are_refused(fresh_hub, admin_b, org_a):
    comm, connected = await watch(admin_b, org_a)
    assert not connected
    anonymous = WebsocketCommunicator(
        application(), f"/ws/accounts/{org_a.id.hex}/tunnels/status", headers=[(b"origin", b"http://testserver")]
    )
    connected, _ = await anonymous.connect()
    assert not connected
