"""What a visitor cannot smuggle to an origin (issue 14, item 11): a Host that is not a hostname is refused with
400 before any routing (on a wildcard route it would otherwise reach the origin verbatim), and client-address
headers other proxies set are dropped like X-Forwarded-*."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator, WebsocketCommunicator

from connector import protocol
from controlplane.actors import Actor
from controlplane.services.zones import zone_create, zone_mark_verified
from edge.headers import origin_headers, valid_host
from tunnels.services import tunnel_config_update, tunnel_create, tunnel_token

pytestmark = [pytest.mark.django_db(transaction=True)]

HOSTILE_HOSTS = [
    b"evil.com/?x=echo.example.com",
    b"<script>.echo.example.com",
    b"a b.echo.example.com",
    b"evil.com#.echo.example.com",
    b"evil.com@x.echo.example.com",
    b"x..echo.example.com",
    b"x.echo.example.com:80:80",
    b"x" * 64 + b".echo.example.com",
]


@pytest.fixture
def wildcard_tunnel(org_a):
    zone_mark_verified(zone=zone_create(organisation=org_a, name="example.com", actor=Actor.cli()), actor=Actor.cli())
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    config = {
        "ingress": [
            {"hostname": "*.echo.example.com", "service": "http://localhost:3001"},
            {"service": "http_status:404"},
        ]
    }
    tunnel_config_update(tunnel=tunnel, config=config, actor=Actor.cli())
    return tunnel


def application():
    from controlplane.asgi import application

    return application


async def connect_peer(token: str):
    comm = WebsocketCommunicator(
        application(),
        protocol.WEBSOCKET_PATH,
        headers=[(b"authorization", f"Bearer {token}".encode()), (b"host", b"127.0.0.1")],
    )
    comm.scope["client"] = ("127.0.0.1", 40000)
    assert (await comm.connect())[0]
    hello = protocol.Hello(connector_id=str(uuid.uuid4()), version="peer", features=["streams"])
    await comm.send_to(bytes_data=protocol.encode(hello))
    while not isinstance(protocol.decode((await comm.receive_output(3))["bytes"]), protocol.Welcome):
        pass
    return comm


async def first_request(comm) -> protocol.Request:
    while True:
        msg = protocol.decode((await comm.receive_output(3))["bytes"])
        if isinstance(msg, protocol.Request):
            return msg


async def test_hostile_hosts_on_a_wildcard_route_are_400_and_never_reach_the_connector(fresh_hub, wildcard_tunnel):
    peer = await connect_peer(await sync_to_async(tunnel_token)(wildcard_tunnel))
    for host in HOSTILE_HOSTS:
        comm = HttpCommunicator(application(), "GET", "/", headers=[(b"host", host)])
        response = await comm.get_response(timeout=5)
        assert response["status"] == 400, host
        assert b"not a hostname" in response["body"]
        assert b"<script>" not in response["body"]
    # The first request the connector sees is the well-formed one sent after them all.
    good = HttpCommunicator(application(), "GET", "/", headers=[(b"host", b"App.Echo.example.com:443")])
    task = asyncio.ensure_future(good.get_response(timeout=5))
    request = await first_request(peer)
    assert request.authority == "App.Echo.example.com:443"
    task.cancel()
    await peer.disconnect()


async def test_a_hostile_host_cannot_open_a_websocket_either(fresh_hub, wildcard_tunnel):
    peer = await connect_peer(await sync_to_async(tunnel_token)(wildcard_tunnel))
    comm = WebsocketCommunicator(application(), "/", headers=[(b"host", b"<script>.echo.example.com")])
    connected, code = await comm.connect(timeout=5)
    assert not connected and code == 1008
    await peer.disconnect()


def test_valid_hosts_pass():
    for host in (b"app.example.com", b"App.Example.com.:8443", b"[::1]:8000", b"_dmarc.x.example.com", b"10.0.0.1"):
        assert valid_host(host), host


def test_client_address_headers_from_visitors_are_dropped(settings):
    settings.EDGE_TRUSTED_PROXY_COUNT = 0
    spoofed = [
        (b"true-client-ip", b"1.1.1.1"),
        (b"forwarded", b"for=1.1.1.1;proto=https"),
        (b"x-client-ip", b"1.1.1.1"),
        (b"x-cluster-client-ip", b"1.1.1.1"),
        (b"client-ip", b"1.1.1.1"),
        (b"x-forwarded-port", b"1"),
        (b"x-forwarded-server", b"evil"),
    ]
    out = origin_headers(
        {"headers": [(b"host", b"app.example.com"), *spoofed], "client": ("203.0.113.7", 5000), "scheme": "https"},
        "abc-edge",
        websocket=False,
    )
    names = {name for name, _ in out}
    assert not names & {name for name, _ in spoofed}
    assert b"1.1.1.1" not in b"".join(value for _, value in out)
    assert (b"cf-connecting-ip", b"203.0.113.7") in out
