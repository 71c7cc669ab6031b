"""/ready, /metrics and /healthcheck over real HTTP."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from connector import metrics, protocol
from connector.metrics import MetricsServer, parse_address

from .conftest import GOOD_CONFIG
from .test_supervisor import Running, make_supervisor, wait_until


async def http_get(address: tuple[str, int], path: str, method: str = "GET") -> tuple[int, dict, bytes]:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


async def test_ready_and_metrics_follow_the_connections(edge):
    sup = make_supervisor(edge)
    server = MetricsServer(sup)
    address = await server.start("127.0.0.1:0")
    try:
        status, headers, body = await http_get(address, "/ready")
        assert status == 503
        assert json.loads(body) == {"status": 503, "readyConnections": 0, "connectorId": sup.connector_id}

        async with Running(sup):
            conn = await edge.next_connection()
            await edge.next_connection()
            await wait_until(lambda: sup.ready_connections == 2)
            await edge.push_config(4, GOOD_CONFIG)
            await wait_until(lambda: sup.config.version == 4)

            status, headers, body = await http_get(address, "/ready")
            assert status == 200 and headers["content-type"] == "application/json"
            assert json.loads(body) == {"status": 200, "readyConnections": 2, "connectorId": sup.connector_id}

            status, headers, body = await http_get(address, "/metrics")
            assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
            text = body.decode()
            assert "# TYPE zt_connector_connections_registered gauge\nzt_connector_connections_registered 2\n" in text
            assert "zt_connector_config_version 4\n" in text
            assert "zt_connector_reconnects_total 0\n" in text
            assert 'zt_connector_frames_sent_total{kind="HELLO"} 2\n' in text
            assert 'zt_connector_frames_received_total{kind="WELCOME"} 2\n' in text
            assert 'zt_connector_frames_sent_total{kind="CONFIG_ACK"} 2\n' in text
            assert f'connector_id="{sup.connector_id}"}} 1\n' in text  # build_info
            for line in text.splitlines():  # every sample line is `name{labels} number`
                if not line.startswith("#"):
                    float(line.rsplit(" ", 1)[1])

            await conn.send(protocol.Drain())
            await wait_until(lambda: sup.ready_connections == 1)
            status, _, body = await http_get(address, "/ready")
            assert status == 200 and json.loads(body)["readyConnections"] == 1
    finally:
        await server.close()


async def test_other_paths_and_methods(edge):
    server = MetricsServer(make_supervisor(edge))
    address = await server.start("127.0.0.1:0")
    try:
        assert (await http_get(address, "/healthcheck"))[::2] == (200, b"OK\n")
        assert (await http_get(address, "/nope"))[0] == 404
        assert (await http_get(address, "/ready", method="POST"))[0] == 405
        status, headers, body = await http_get(address, "/metrics", method="HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 100
        # Garbage and silence do not hurt the server.
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"\x00\x01garbage\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 400")
        writer.close()
        assert (await http_get(address, "/healthcheck"))[0] == 200
    finally:
        await server.close()


async def test_default_address_falls_back_to_the_next_free_known_port(edge, monkeypatch):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    free_port = free.getsockname()[1]
    free.close()
    monkeypatch.setattr(metrics, "DEFAULT_PORTS", (taken.getsockname()[1], free_port))
    server = MetricsServer(make_supervisor(edge))
    try:
        assert await server.start(None) == ("127.0.0.1", free_port)
        await server.close()
        # With every known port taken, any free port will do.
        monkeypatch.setattr(metrics, "DEFAULT_PORTS", (taken.getsockname()[1],))
        host, port = await server.start(None)
        assert port not in (0, taken.getsockname()[1])
    finally:
        await server.close()
        taken.close()


async def test_explicit_address_in_use_is_an_error(edge):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(OSError, match="cannot listen"):
            await MetricsServer(make_supervisor(edge)).start(f"127.0.0.1:{taken.getsockname()[1]}")
    finally:
        taken.close()


def test_parse_address():
    assert parse_address("127.0.0.1:20241") == ("127.0.0.1", 20241)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    assert parse_address(":9000") == ("127.0.0.1", 9000)
    assert parse_address("0.0.0.0:0") == ("0.0.0.0", 0)
    for bad in ("nope", "host:", "host:99999", "host:x"):
        with pytest.raises(ValueError):
            parse_address(bad)
