"""A fake control plane for the connector tests: a real websocket server (the `websockets` package, an
independent RFC 6455 implementation) that speaks connector/protocol.py the way the Django server will."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from connector import httpclient, protocol
from connector.protocol import Kind
from connector.token import encode_token

SECRET = os.urandom(32)
ACCOUNT = "0123456789abcdef0123456789abcdef"
TUNNEL_ID = "6f1c6a5e-7d6e-4b3a-9d7a-3c1f2e0b9a11"
TOKEN = encode_token(ACCOUNT, TUNNEL_ID, SECRET)
GOOD_CONFIG = {
    "ingress": [{"hostname": "a.example.com", "service": "http://localhost:8080"}, {"service": "http_status:404"}]
}


class EdgeConnection:
    """One connector connection as the fake server sees it."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.hello: protocol.Hello | None = None
        self.received: asyncio.Queue = asyncio.Queue()
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()

    async def send(self, message: protocol.Message) -> None:
        await self.ws.send(protocol.encode(message))

    async def expect(self, kind: Kind, timeout: float = 5.0) -> protocol.Message:
        """The next frame of `kind` (PING/PONG heartbeats in between are skipped)."""
        while True:
            message = await asyncio.wait_for(self.received.get(), timeout)
            if message.KIND == kind:
                return message
            if message.KIND not in (Kind.PING, Kind.PONG):
                raise AssertionError(f"expected {kind.name}, got {message!r}")

    async def close_seen(self, timeout: float = 5.0) -> tuple[int, str]:
        return await asyncio.wait_for(asyncio.shield(self.closed), timeout)


class FakeEdge:
    def __init__(self, token: str = TOKEN, heartbeat_interval: float = 10.0, auto_pong: bool = True) -> None:
        self.token = token
        self.heartbeat_interval = heartbeat_interval
        self.auto_pong = auto_pong
        self.config: protocol.Config | None = None
        self.accepted: asyncio.Queue[EdgeConnection] = asyncio.Queue()
        self.connections: list[EdgeConnection] = []
        self.auth_headers: list[str | None] = []
        self.refuse_with: tuple[int, str] | None = None  # close every new connection with this code
        self.custom_handler = None  # replaces the protocol handling below for special cases
        self.server = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{protocol.WEBSOCKET_PATH}"

    async def start(self, port: int = 0) -> FakeEdge:
        self.server = await serve(
            self._handler,
            "127.0.0.1",
            port,
            process_request=self._process_request,
            max_size=protocol.MAX_FRAME_SIZE,
            ping_interval=None,
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def _process_request(self, connection, request):
        self.auth_headers.append(request.headers.get("Authorization"))
        if request.path != protocol.WEBSOCKET_PATH:
            return Response(404, "Not Found", Headers([("Content-Length", "10")]), b"not found\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        conn = EdgeConnection(ws)
        self.connections.append(conn)
        try:
            if self.custom_handler is not None:
                await self.custom_handler(ws)
                return
            if self.refuse_with:
                await ws.close(*self.refuse_with)
                return
            if ws.request.headers.get("Authorization") != f"Bearer {self.token}":
                await ws.close(protocol.CloseCode.INVALID_TOKEN, "invalid token")
                return
            hello = protocol.decode(await ws.recv())
            assert isinstance(hello, protocol.Hello), hello
            conn.hello = hello
            await conn.send(
                protocol.Welcome(
                    connection_id=str(uuid.uuid4()),
                    server_id="test-server",
                    heartbeat_interval=self.heartbeat_interval,
                    location="lab",
                )
            )
            if self.config is not None and self.config.version > hello.config_version:
                await conn.send(self.config)
            await self.accepted.put(conn)
            async for data in ws:
                message = protocol.decode(data)
                if isinstance(message, protocol.Ping) and self.auto_pong:
                    await conn.send(protocol.Pong(nonce=message.nonce, ts=message.ts))
                await conn.received.put(message)
        except ConnectionClosed:
            pass
        finally:
            if not conn.closed.done():
                conn.closed.set_result((ws.close_code, ws.close_reason))

    async def next_connection(self, timeout: float = 5.0) -> EdgeConnection:
        return await asyncio.wait_for(self.accepted.get(), timeout)

    async def push_config(self, version: int, config: dict) -> None:
        self.config = protocol.Config(version=version, config=config)
        for conn in self.connections:
            if conn.hello is not None and not conn.closed.done():
                await conn.send(self.config)

    def kill(self) -> None:
        """Crash the server: stop listening and drop every TCP connection without a close frame."""
        self.server.close(close_connections=False)
        for conn in self.connections:
            conn.ws.transport.abort()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def edge():
    server = await FakeEdge().start()
    yield server
    await server.stop()


@pytest.fixture(params=["httptools", "pure-python"] if httpclient.httptools else ["pure-python"])
def parser(request, monkeypatch):
    """Every test that uses an origin runs with both response parsers."""
    monkeypatch.setattr(httpclient.OriginConnection, "pure_python", request.param == "pure-python")
    return request.param


@pytest.fixture
async def origin(parser):
    from .dataplane_harness import standard_origin  # the harness imports this module

    server = await standard_origin().start()
    yield server
    await server.stop()
