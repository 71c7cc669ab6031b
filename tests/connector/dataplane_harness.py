"""Test harness for the data plane: a controllable HTTP/1.1 origin on asyncio streams, and a driver that plays the
edge's side of streams (REQUEST, body DATA within the connector's window, WINDOW grants) over the fake control
plane of conftest.py, checking that the connector never sends more than the window it was granted."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import json
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connector import protocol
from connector.protocol import INITIAL_WINDOW, MAX_DATA_CHUNK, Kind
from connector.supervisor import Settings, Supervisor
from connector.token import parse_token

from .conftest import TOKEN, EdgeConnection, FakeEdge

# ------------------------------------------------------------------------------------------------ the origin


class OriginRequest:
    def __init__(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, chunked: bool) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.chunked = chunked

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


Handler = Callable[[OriginRequest, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool | None]]


class Origin:
    """An HTTP/1.1 origin: keep-alive, content-length or chunked request bodies, one handler per path (the path
    without query); a handler writes its own response and returns False to close the connection."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.connections = 0
        self.requests: list[OriginRequest] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.read_body = True

    def route(self, path: str) -> Callable[[Handler], Handler]:
        def decorator(handler: Handler) -> Handler:
            self.routes[path] = handler
            return handler

        return decorator

    async def start(self, *, unix_path: str = "", ssl: Any = None) -> Origin:
        if unix_path:
            self.server = await asyncio.start_unix_server(self._serve, unix_path, ssl=ssl)
        else:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl)
            self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in list(self.writers):
                writer.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head[:-4].decode("latin-1").split("\r\n")
                method, target, _version = lines[0].split(" ")
                headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
                request = OriginRequest(method, target, headers, b"", False)  # type: ignore[arg-type]
                self.requests.append(request)
                handler = self.routes.get(target.split("?")[0], _not_found)
                if self.read_body and getattr(handler, "streams_body", False) is False:
                    request.body, request.chunked = await read_body(reader, request)
                keep = await handler(request, reader, writer)
                await writer.drain()
                if keep is False:
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self.writers.discard(writer)
            writer.close()


async def read_body(reader: asyncio.StreamReader, request: OriginRequest) -> tuple[bytes, bool]:
    length = request.header("content-length")
    if length is not None:
        return await reader.readexactly(int(length)), False
    if (request.header("transfer-encoding") or "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts), True
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    return b"", False


def respond(
    writer: asyncio.StreamWriter, status: int = 200, body: bytes = b"", headers: list[tuple[str, str]] | None = None
) -> None:
    lines = [f"HTTP/1.1 {status} X"]
    names = {name.lower() for name, _ in headers or []}
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    if "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


async def _not_found(request: OriginRequest, reader, writer) -> None:
    respond(writer, 404, b"not found")


def streams_body(handler: Handler) -> Handler:
    """The handler reads the request body itself (e.g. slowly)."""
    handler.streams_body = True  # type: ignore[attr-defined]
    return handler


def standard_origin() -> Origin:
    origin = Origin()

    @origin.route("/hello")
    async def hello(request, reader, writer):
        respond(writer, 200, b"x" * 1024, [("Content-Type", "text/plain")])

    @origin.route("/echo")
    async def echo(request, reader, writer):
        respond(writer, 200, request.body, [("X-Chunked", "yes" if request.chunked else "no")])

    @origin.route("/headers")
    async def headers(request, reader, writer):
        data = {"method": request.method, "target": request.target, "headers": request.headers}
        respond(writer, 200, json.dumps(data).encode(), [("Content-Type", "application/json")])

    @origin.route("/big")
    async def big(request, reader, writer):
        size = int(request.target.split("=")[1])
        respond(writer, 200, os.urandom(16) * (size // 16))

    @origin.route("/until-close")
    async def until_close(request, reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it until the close")
        return False

    @origin.route("/drop")
    async def drop(request, reader, writer):
        writer.transport.abort()
        return False

    @origin.route("/garbage")
    async def garbage(request, reader, writer):
        writer.write(b"SPDY/9 what\r\n\r\n")
        return False

    @origin.route("/no-content")
    async def no_content(request, reader, writer):
        writer.write(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n")

    @origin.route("/cookies")
    async def cookies(request, reader, writer):
        respond(writer, 201, b"ok", [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Connection", "keep-alive")])

    return origin


# ------------------------------------------------------------------------------------------------ the edge's side


class StreamResult:
    def __init__(self) -> None:
        self.response: protocol.Response | None = None
        self.body = bytearray()
        self.chunks: list[bytes] = []
        self.reset: protocol.Reset | None = None
        self.ended = False
        self.ws_messages: list[protocol.WsMessage] = []


class EdgeDriver:
    """Plays the edge on one connector connection: opens streams, sends bodies within the connector's window,
    grants WINDOW credit as it reads, and asserts the connector never exceeds the window it granted."""

    def __init__(self, conn: EdgeConnection, grant: bool = True) -> None:
        self.conn = conn
        self.grant = grant
        self.next_id = 1
        self.queues: dict[int, asyncio.Queue] = collections.defaultdict(asyncio.Queue)
        self.recv_window: dict[int, int] = {}  # what the connector may still send us, per stream
        self.send_window: dict[int, int] = {}  # what we may still send the connector
        self.window_events: dict[int, asyncio.Event] = collections.defaultdict(asyncio.Event)
        self.violations: list[str] = []
        self.control: list[protocol.Message] = []  # control frames seen (DRAIN, CONFIG_ACK, ...)
        self.task = asyncio.ensure_future(self._route())

    async def _route(self) -> None:
        while True:
            message = await self.conn.received.get()
            if message.KIND < 16:
                self.control.append(message)
                continue
            sid = message.stream_id
            counted = message.KIND == Kind.DATA or (message.KIND == Kind.WS_MESSAGE and not message.end_stream)
            if counted:
                self.recv_window[sid] = self.recv_window.get(sid, INITIAL_WINDOW) - len(message.data)
                if message.KIND == Kind.DATA and len(message.data) > MAX_DATA_CHUNK:
                    self.violations.append(f"stream {sid}: DATA of {len(message.data)} bytes")
                if self.recv_window[sid] < 0 and message.KIND == Kind.DATA:
                    self.violations.append(f"stream {sid}: window exceeded by {-self.recv_window[sid]}")
            elif message.KIND == Kind.WINDOW:
                self.send_window[sid] = self.send_window.get(sid, INITIAL_WINDOW) + message.increment
                self.window_events[sid].set()
            self.queues[sid].put_nowait(message)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task
        assert not self.violations, self.violations

    async def request(
        self,
        path: str = "/",
        *,
        method: str = "GET",
        host: str = "app.example.com",
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes | None = None,
        websocket: bool = False,
        more: bool = False,
        ray: str = "ray-1",
    ) -> int:
        sid = self.next_id
        self.next_id += 2
        all_headers = [(b"host", host.encode()), (b"cf-ray", ray.encode()), *(headers or [])]
        end = not body and not more and not websocket
        await self.conn.send(
            protocol.Request(sid, method, "https", host, path, all_headers, end_stream=end, websocket=websocket)
        )
        if body:
            await self.send_body(sid, body, end=not more)
        return sid

    async def send_body(self, sid: int, data: bytes, end: bool = True) -> None:
        """Send within the connector's grant, waiting for WINDOW frames like the edge does."""
        view = memoryview(data)
        while view:
            window = self.send_window.get(sid, INITIAL_WINDOW)
            if window <= 0:
                self.window_events[sid].clear()
                await asyncio.wait_for(self.window_events[sid].wait(), 10)
                continue
            size = min(len(view), MAX_DATA_CHUNK, window)
            chunk, view = bytes(view[:size]), view[size:]
            self.send_window[sid] = window - size
            await self.conn.send(protocol.Data(sid, chunk, end_stream=end and not view))
        if end and not data:
            await self.conn.send(protocol.Data(sid, b"", end_stream=True))

    async def next(self, sid: int, timeout: float = 5.0) -> Any:
        return await asyncio.wait_for(self.queues[sid].get(), timeout)

    async def next_message(self, sid: int, timeout: float = 5.0) -> protocol.WsMessage:
        """The next WS_MESSAGE (WINDOW grants in between are skipped)."""
        while True:
            message = await self.next(sid, timeout)
            if message.KIND != Kind.WINDOW:
                return message

    async def head(self, sid: int, timeout: float = 5.0) -> protocol.Response | protocol.Reset:
        while True:
            message = await self.next(sid, timeout)
            if message.KIND in (Kind.RESPONSE, Kind.RESET):
                return message

    async def result(self, sid: int, timeout: float = 10.0) -> StreamResult:
        """Read the stream to its end (or reset), granting credit as we go."""
        result = StreamResult()
        unacked = 0
        while True:
            message = await self.next(sid, timeout)
            if message.KIND == Kind.RESPONSE:
                result.response = message
                if message.end_stream:
                    result.ended = True
                    return result
            elif message.KIND == Kind.DATA:
                result.body += message.data
                if message.data:
                    result.chunks.append(message.data)
                unacked += len(message.data)
                if self.grant and unacked >= INITIAL_WINDOW // 2:
                    self.recv_window[sid] += unacked
                    await self.conn.send(protocol.Window(sid, unacked))
                    unacked = 0
                if message.end_stream:
                    result.ended = True
                    return result
            elif message.KIND == Kind.RESET:
                result.reset = message
                return result
            elif message.KIND == Kind.WS_MESSAGE:
                result.ws_messages.append(message)
                if message.end_stream:
                    return result

    async def fetch(self, path: str = "/", **kwargs: Any) -> StreamResult:
        return await self.result(await self.request(path, **kwargs))


def headers_of(response: protocol.Response) -> dict[bytes, list[bytes]]:
    found: dict[bytes, list[bytes]] = collections.defaultdict(list)
    for name, value in response.headers:
        found[name].append(value)
    return found


# ------------------------------------------------------------------------------------------------ a running connector


class Connector:
    """A supervisor with one connection to the fake edge, a configuration pushed, and an EdgeDriver on it."""

    def __init__(self, edge: FakeEdge, config: dict | None, *, grace_period: float = 2.0, **settings: Any) -> None:
        self.edge = edge
        self.config = config
        self.supervisor = Supervisor(
            Settings(
                url=edge.url,
                token=parse_token(TOKEN),
                ha_connections=1,
                grace_period=grace_period,
                backoff_base=0.02,
                backoff_cap=0.2,
                **settings,
            )
        )
        self.task: asyncio.Task | None = None
        self.driver: EdgeDriver | None = None
        self.version = 0

    async def __aenter__(self) -> Connector:
        self.task = asyncio.ensure_future(self.supervisor.run())
        conn = await self.edge.next_connection()
        self.driver = EdgeDriver(conn)
        if self.config is not None:
            await self.push(self.config)
        return self

    async def push(self, config: dict) -> None:
        self.version += 1
        assert self.driver is not None
        await self.driver.conn.send(protocol.Config(version=self.version, config=config))
        deadline = asyncio.get_running_loop().time() + 5
        while self.supervisor.config.version != self.version:
            assert asyncio.get_running_loop().time() < deadline, "config not applied"
            await asyncio.sleep(0.005)

    async def __aexit__(self, *exc: Any) -> None:
        self.supervisor.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)
        if self.driver is not None:
            await self.driver.close()


def rules(service: str, origin_request: dict | None = None, hostname: str = "app.example.com") -> dict:
    rule: dict[str, Any] = {"hostname": hostname, "service": service}
    if origin_request:
        rule["originRequest"] = origin_request
    return {"ingress": [rule, {"service": "http_status:404"}]}


# ------------------------------------------------------------------------------------------------ helpers of the tests


def config_for(origin: Origin, **origin_request: Any) -> dict:
    return rules(f"http://127.0.0.1:{origin.port}", origin_request or None)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def make_pki(tmp_path, names=("origin.test",)):
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Origin CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(name) for name in names]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return str(ca_file), context
