"""The connector websocket: authentication, HELLO/WELCOME, config push and ack, bad input, live status."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from connector import protocol
from controlplane.actors import Actor
from tunnels.models import Connection, Connector
from tunnels.secrets import build_token
from tunnels.services import tunnel_config_update, tunnel_rotate_secret, tunnel_token

pytestmark = [pytest.mark.django_db(transaction=True)]

CONFIG = {
    "ingress": [{"hostname": "app.example.com", "service": "http://localhost:3001"}, {"service": "http_status:404"}]
}


def application():
    from controlplane.asgi import application

    return application


async def open_connector(token: str, *, index: int = 0, ha: int = 1, connector_id: str | None = None):
    comm = WebsocketCommunicator(
        application(), protocol.WEBSOCKET_PATH, headers=[(b"authorization", f"Bearer {token}".encode())]
    )
    comm.scope["client"] = ("127.0.0.1", 50000)
    connected, _ = await comm.connect(timeout=10)
    assert connected
    hello = protocol.Hello(
        connector_id=connector_id or str(uuid.uuid4()),
        version="test-1.0",
        conn_index=index,
        ha_connections=ha,
        arch="linux_amd64",
        hostname="origin-1",
        local_ip="10.0.0.5",
    )
    await comm.send_to(bytes_data=protocol.encode(hello))
    return comm, hello


async def receive(comm, timeout: float = 3.0):
    output = await comm.receive_output(timeout)
    if output["type"] == "websocket.close":
        return output
    return protocol.decode(output["bytes"])


async def closed(comm, timeout: float = 3.0) -> dict:
    """The close that ends a refused connection; the ERROR frame that explains it comes first and must agree."""
    output = await comm.receive_output(timeout)
    if output["type"] == "websocket.send":
        error = protocol.decode(output["bytes"])
        assert isinstance(error, protocol.Error)
        output = await comm.receive_output(timeout)
        assert output["type"] == "websocket.close" and error.code == str(output["code"])
    return output


async def wait_for(predicate, timeout: float = 5.0):
    for _ in range(int(timeout / 0.05)):
        if await sync_to_async(predicate)():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_hello_is_welcomed_and_recorded(fresh_hub, tunnel_a):
    token = await sync_to_async(tunnel_token)(tunnel_a)
    comm, hello = await open_connector(token)
    welcome = await receive(comm)
    assert isinstance(welcome, protocol.Welcome)
    await wait_for(
        lambda: Connection.objects.for_org(tunnel_a.organisation).filter(closed_at__isnull=True).count() == 1
    )
    connector = await sync_to_async(lambda: Connector.objects.for_org(tunnel_a.organisation).get())()
    assert str(connector.connector_id) == hello.connector_id
    assert connector.version == "test-1.0" and connector.arch == "linux_amd64"
    assert connector.origin_ip == "127.0.0.1"
    await comm.disconnect()
    await wait_for(
        lambda: Connection.objects.for_org(tunnel_a.organisation).filter(closed_at__isnull=True).count() == 0
    )


async def test_config_push_and_ack(fresh_hub, tunnel_a, zone_a):
    token = await sync_to_async(tunnel_token)(tunnel_a)
    comm, _ = await open_connector(token)
    assert isinstance(await receive(comm), protocol.Welcome)
    await wait_for(lambda: Connection.objects.for_org(tunnel_a.organisation).count() == 1)
    await sync_to_async(tunnel_config_update)(tunnel=tunnel_a, config=CONFIG, actor=Actor.cli())
    pushed = await receive(comm)
    assert isinstance(pushed, protocol.Config) and pushed.version == 1
    assert pushed.config["ingress"][0]["hostname"] == "app.example.com"
    await comm.send_to(bytes_data=protocol.encode(protocol.ConfigAck(version=1, applied=True, running_version=1)))
    await wait_for(lambda: Connector.objects.for_org(tunnel_a.organisation).get().config_version == 1)
    await comm.disconnect()


async def test_a_new_connection_receives_the_current_config(fresh_hub, tunnel_a, zone_a):
    await sync_to_async(tunnel_config_update)(tunnel=tunnel_a, config=CONFIG, actor=Actor.cli())
    token = await sync_to_async(tunnel_token)(tunnel_a)
    comm, _ = await open_connector(token)
    assert isinstance(await receive(comm), protocol.Welcome)
    config = await receive(comm)
    assert isinstance(config, protocol.Config) and config.version == 1
    await comm.disconnect()


@pytest.mark.parametrize(
    "header,code",
    [
        (b"", protocol.CloseCode.INVALID_TOKEN),
        (b"Bearer not-base64!!", protocol.CloseCode.INVALID_TOKEN),
        (b"Bearer " + base64.b64encode(b'{"a":"x"}'), protocol.CloseCode.INVALID_TOKEN),
    ],
)
async def test_malformed_tokens_are_refused_with_a_reason(fresh_hub, tunnel_a, header, code):
    headers = [(b"authorization", header)] if header else []
    comm = WebsocketCommunicator(application(), protocol.WEBSOCKET_PATH, headers=headers)
    connected, _ = await comm.connect(timeout=10)
    assert connected
    output = await closed(comm)
    assert output["type"] == "websocket.close" and output["code"] == code


async def test_wrong_secret_and_rotated_token_are_refused(fresh_hub, tunnel_a):
    wrong = build_token(account_tag=tunnel_a.organisation_id.hex, tunnel_id=tunnel_a.id, secret=b"x" * 32)
    comm, _ = await open_connector(wrong)
    assert (await closed(comm))["code"] == protocol.CloseCode.TOKEN_REFUSED

    old = await sync_to_async(tunnel_token)(tunnel_a)
    live, _ = await open_connector(old)
    assert isinstance(await receive(live), protocol.Welcome)
    rotated = await sync_to_async(tunnel_rotate_secret)(tunnel=tunnel_a, actor=Actor.cli(), disconnect=True)
    output = await live.receive_output(3)
    assert output["type"] == "websocket.close" and output["code"] == protocol.CloseCode.TOKEN_REFUSED
    again, _ = await open_connector(old)
    assert (await closed(again))["code"] == protocol.CloseCode.TOKEN_REFUSED
    fresh = await sync_to_async(tunnel_token)(rotated)
    ok, _ = await open_connector(fresh)
    welcome = await receive(ok)
    assert isinstance(welcome, protocol.Welcome), welcome
    await ok.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        b"\x01",  # shorter than the header
        protocol.HEADER.pack(1, 99, 0, 0) + b"{}",  # unknown kind
        protocol.HEADER.pack(1, protocol.Kind.PING, 0, 0) + b"{not json",
        protocol.HEADER.pack(7, protocol.Kind.PING, 0, 0) + b"{}",  # unknown protocol version
        b"\x00" * (2 * 1024 * 1024),  # oversized
    ],
)
async def test_garbled_frames_close_with_protocol_violation(fresh_hub, tunnel_a, frame):
    token = await sync_to_async(tunnel_token)(tunnel_a)
    comm, _ = await open_connector(token)
    assert isinstance(await receive(comm), protocol.Welcome)
    await comm.send_to(bytes_data=frame)
    closed = await comm.receive_output(3)
    assert closed["type"] == "websocket.close" and closed["code"] == protocol.CloseCode.PROTOCOL_VIOLATION
    await wait_for(
        lambda: Connection.objects.for_org(tunnel_a.organisation).filter(closed_at__isnull=False).count() == 1
    )
    reason = await sync_to_async(lambda: Connection.objects.for_org(tunnel_a.organisation).get().close_reason)()
    assert reason.startswith("protocol violation")


async def test_text_frames_and_missing_hello_are_refused(fresh_hub, tunnel_a):
    token = await sync_to_async(tunnel_token)(tunnel_a)
    comm = WebsocketCommunicator(
        application(), protocol.WEBSOCKET_PATH, headers=[(b"authorization", f"Bearer {token}".encode())]
    )
    await comm.connect(timeout=10)
    await comm.send_to(text_data=json.dumps({"kind": "hello"}))
    assert (await closed(comm))["code"] == protocol.CloseCode.PROTOCOL_VIOLATION


async def test_ping_is_answered(fresh_hub, tunnel_a):
    token = await sync_to_async(tunnel_token)(tunnel_a)
    comm, _ = await open_connector(token)
    assert isinstance(await receive(comm), protocol.Welcome)
    await comm.send_to(bytes_data=protocol.encode(protocol.Ping(nonce=7, ts=1.5)))
    pong = await receive(comm)
    assert isinstance(pong, protocol.Pong) and pong.nonce == 7 and pong.ts == 1.5
    await comm.disconnect()
