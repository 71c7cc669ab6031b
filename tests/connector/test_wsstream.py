"""Websocket streams through the data plane (connector/wsstream.py): a `websockets` origin, subprotocols, closes both
ways, refused or unreachable origins, a TLS origin."""

from __future__ import annotations

import json

import pytest

from connector import protocol
from connector.protocol import ResetCode

from .dataplane_harness import (
    Connector,
    closed_port,
    config_for,
    headers_of,
    make_pki,
    rules,
    wait_until,
)


@pytest.fixture
async def ws_origin():
    from websockets.asyncio.server import serve

    closes: list[tuple[int, str]] = []

    async def handler(ws):
        from websockets.exceptions import ConnectionClosed

        try:
            async for message in ws:
                if message == "close-me":
                    await ws.close(4002, "origin says bye")
                    return
                if message == "headers":
                    await ws.send(json.dumps(dict(ws.request.headers.raw_items())))
                    continue
                await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            closes.append((ws.close_code, ws.close_reason))

    server = await serve(handler, "127.0.0.1", 0, subprotocols=["superchat"])
    server.port = server.sockets[0].getsockname()[1]
    server.closes = closes
    yield server
    server.close()


async def test_websocket_passthrough_with_subprotocol_and_closes(edge, ws_origin):
    async with Connector(edge, rules(f"http://127.0.0.1:{ws_origin.port}")) as connector:
        driver = connector.driver
        sid = await driver.request(
            "/socket", websocket=True, headers=[(b"sec-websocket-protocol", b"chat, superchat"), (b"x-a", b"1")]
        )
        head = await driver.head(sid)
        assert head.status == 101
        assert headers_of(head)[b"sec-websocket-protocol"] == [b"superchat"]
        await driver.conn.send(protocol.WsMessage(sid, "héllo".encode(), binary=False))
        text = await driver.next_message(sid)
        assert text.data.decode() == "héllo" and not text.binary
        await driver.conn.send(protocol.WsMessage(sid, b"\x00\x01" * 100_000, binary=True))
        binary = await driver.next_message(sid)
        assert binary.binary and binary.data == b"\x00\x01" * 100_000
        await driver.conn.send(protocol.WsMessage(sid, b"headers", binary=False))
        seen = {k.lower(): v for k, v in json.loads((await driver.next_message(sid)).data).items()}
        assert seen["host"] == "app.example.com" and seen["x-a"] == "1" and seen["cf-ray"] == "ray-1"
        await driver.conn.send(protocol.WsMessage.close(sid, 4001, "edge says bye"))
        await wait_until(lambda: ws_origin.closes)
        assert ws_origin.closes[0] == (4001, "edge says bye")

        sid = await driver.request("/socket", websocket=True, headers=[(b"sec-websocket-protocol", b"superchat")])
        assert (await driver.head(sid)).status == 101
        await driver.conn.send(protocol.WsMessage(sid, b"close-me", binary=False))
        closing = await driver.next_message(sid)
        assert closing.end_stream and closing.close_code() == (4002, "origin says bye")
        await wait_until(lambda: not connector.supervisor.connections[0].streams)


async def test_websocket_refused_or_unreachable(edge, origin):
    async with Connector(edge, config_for(origin)) as connector:
        refused = await connector.driver.fetch("/nowhere", websocket=True)
        await connector.push(rules(f"http://127.0.0.1:{await closed_port()}"))
        unreachable = await connector.driver.fetch("/", websocket=True)
    assert refused.response.status == 404 and bytes(refused.body) == b"not found"
    assert unreachable.reset.code == ResetCode.ORIGIN_ERROR
    assert unreachable.reset.message.startswith("connection refused by 127.0.0.1:")


async def test_websocket_to_a_tls_origin(edge, tmp_path):
    from websockets.asyncio.server import serve

    ca_file, context = make_pki(tmp_path)

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    server = await serve(echo, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        config = rules(f"https://127.0.0.1:{port}", {"caPool": ca_file, "originServerName": "origin.test"})
        async with Connector(edge, config) as connector:
            driver = connector.driver
            sid = await driver.request("/", websocket=True)
            assert (await driver.head(sid)).status == 101
            await driver.conn.send(protocol.WsMessage(sid, b"secure", binary=True))
            assert (await driver.next_message(sid)).data == b"secure"
    finally:
        server.close()
