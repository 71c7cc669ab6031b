"""End to end, the production topology: two real daphne instances (A and B) on the PostgreSQL test database and
Redis, a real connector connected to A only, real origins on loopback. Requests with the public hostname sent to B
are carried B → A over the peer link and A → connector (dataplane/): GET, a POST body larger than the stream
window, a websocket echo. Then the failures: the connector killed (B answers 530 within seconds), a request in
flight when A dies (502, at once), A dead (530, never a hang)."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from django.db import connection

from controlplane.actors import Actor
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.conftest import REQUIRE_SERVICES
from tests.live_server import LiveServer, free_port, run_daphne, serve_in_thread, start_connector
from tunnels.models import Connection, ServerInstance
from tunnels.services import tunnel_config_update, tunnel_create, tunnel_token

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.django_db(transaction=True)]

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/13"


def missing_service(message: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (REQUIRE_SERVICES=1: the production topology must be tested)")
    pytest.skip(message)


@pytest.fixture
def services() -> str:
    import redis

    if connection.vendor != "postgresql":
        missing_service(f"the suite runs on {connection.vendor}; set DATABASE_URL to run it on PostgreSQL")
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        missing_service(f"Redis is not reachable at {TEST_REDIS_URL}: {exc}")
    finally:
        client.close()
    return TEST_REDIS_URL


# -- origins on loopback ----------------------------------------------------------------------------------------


class OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002
        pass

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True  # the connector gave up on the request (its instance died)

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(3)
        self._reply(200, f"hello from the origin: {self.path}".encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._reply(200, body, "application/octet-stream")


class OriginServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the connector dials many origin connections at once


@contextlib.contextmanager
def http_origin() -> Iterator[int]:
    with serve_in_thread(OriginHandler, OriginServer) as port:
        yield port


@contextlib.contextmanager
def websocket_origin() -> Iterator[int]:
    from websockets.sync.server import serve

    def echo(ws) -> None:
        for message in ws:
            ws.send(message)

    server = serve(echo, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.socket.getsockname()[1]
    finally:
        server.shutdown()


# -- the topology -----------------------------------------------------------------------------------------------


@dataclass
class Topology:
    a: LiveServer
    b: LiveServer
    token: str
    tmp_path: object
    connector: subprocess.Popen | None = None

    def start_connector(self) -> None:
        self.connector = start_connector(self.token, self.a.url, self.tmp_path / "connector.log")

    def kill_connector(self) -> None:
        if self.connector is not None and self.connector.poll() is None:
            self.connector.kill()
            self.connector.wait(10)

    def logs(self) -> str:
        connector = (self.tmp_path / "connector.log").read_text(errors="replace")[-4000:]
        a, b = self.a.log_text()[-6000:], self.b.log_text()[-6000:]
        return f"--- A ---\n{a}\n--- B ---\n{b}\n--- connector ---\n{connector}"


def server_env(redis_url: str, port: int) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "EDGE_PEER_URL": f"ws://127.0.0.1:{port}",
        "CONNECTOR_HEARTBEAT_SECONDS": "2",
        "SERVER_INSTANCE_HEARTBEAT_SECONDS": "1",
        "SERVER_INSTANCE_DEADLINE_SECONDS": "6",
        "LOG_LEVEL": "INFO",
    }


@contextlib.contextmanager
def two_instances(redis_url: str, token: str, tmp_path) -> Iterator[Topology]:
    """Instances A and B on the test database and Redis, each advertising its loopback address to the other."""
    port_a, port_b = free_port(), free_port()
    with (
        run_daphne(env=server_env(redis_url, port_a), port=port_a) as a,
        run_daphne(env=server_env(redis_url, port_b), port=port_b) as b,
    ):
        topology = Topology(a=a, b=b, token=token, tmp_path=tmp_path)
        try:
            yield topology
        except BaseException:
            print(topology.logs())
            raise
        finally:
            topology.kill_connector()


def visit(server: LiveServer, host: str, path: str = "/", **kwargs) -> httpx.Response:
    method = kwargs.pop("method", "GET")
    return httpx.request(method, server.url + path, headers={"Host": host}, timeout=kwargs.pop("timeout", 10), **kwargs)


def wait_for_status(server: LiveServer, host: str, status: int, timeout: float, path: str = "/") -> float:
    """Seconds until `server` answers `status` for `host` (polling), or fail naming what it answered."""
    start = time.monotonic()
    seen: list[int] = []
    while time.monotonic() - start < timeout:
        try:
            code = visit(server, host, path, timeout=5).status_code
        except httpx.HTTPError as exc:
            code = -1
            seen.append(code)
            if len(seen) > 3 and seen[-3:] == [-1, -1, -1]:
                raise AssertionError(f"{server.url} fails: {exc}") from exc
        if code == status:
            return time.monotonic() - start
        seen.append(code)
        time.sleep(0.1)
    raise AssertionError(f"{server.url} never answered {status} for {host} within {timeout} s: {seen[-20:]}")


async def websocket_echo(server: LiveServer, host: str, messages: list[str | bytes]) -> list[str | bytes]:
    import websockets

    sock = socket.create_connection((server.host, server.port))
    async with websockets.connect(f"ws://{host}:{server.port}/chat", sock=sock, open_timeout=10) as ws:
        answers = []
        for message in messages:
            await ws.send(message)
            answers.append(await asyncio.wait_for(ws.recv(), 10))
        return answers


@pytest.fixture
def routed(org_a, tmp_path):
    zone_mark_verified(zone=zone_create(organisation=org_a, name="example.com", actor=Actor.cli()), actor=Actor.cli())
    return tunnel_create(organisation=org_a, name="relay", actor=Actor.cli())


def test_a_request_at_b_is_served_by_the_connector_on_a(services, routed, tmp_path):
    tunnel = routed
    with http_origin() as http_port, websocket_origin() as ws_port:
        config = {
            "ingress": [
                {"hostname": "app.example.com", "service": f"http://127.0.0.1:{http_port}"},
                {"hostname": "ws.example.com", "service": f"http://127.0.0.1:{ws_port}"},
                {"service": "http_status:404"},
            ]
        }
        tunnel_config_update(tunnel=tunnel, config=config, actor=Actor.cli())
        token = tunnel_token(tunnel)
        with two_instances(services, token, tmp_path) as topology:
            a, b = topology.a, topology.b
            # Both hubs started (the first edge request starts a process's hub); nothing is connected yet.
            assert visit(a, "app.example.com").status_code == 530
            assert visit(b, "app.example.com").status_code == 530

            topology.start_connector()
            wait_for_status(a, "app.example.com", 200, timeout=20)
            wait_for_status(b, "app.example.com", 200, timeout=10)
            servers = set(
                Connection.objects.for_org(tunnel.organisation)
                .filter(closed_at__isnull=True)
                .values_list("server_id", flat=True)
            )
            assert len(servers) == 1, "the connector is connected to A only"
            assert ServerInstance.objects.get(server_id=servers.pop()).peer_url == a.url.replace("http", "ws")

            # GET, query string and the edge's headers.
            response = visit(b, "app.example.com", "/path?q=1")
            assert response.status_code == 200
            assert response.text == "hello from the origin: /path?q=1"
            assert response.headers["cf-ray"]

            # A POST body larger than the stream window: flow control is end to end (B ↔ connector) through A.
            body = os.urandom(700_000)
            response = visit(b, "app.example.com", "/echo", method="POST", content=body, timeout=20)
            assert response.status_code == 200 and response.content == body

            # Websocket passthrough, text and binary.
            answers = asyncio.run(websocket_echo(b, "ws.example.com", ["hello", b"\x00\x01binary", "x" * 300_000]))
            assert answers == ["hello", b"\x00\x01binary", "x" * 300_000]

            # Concurrent requests share the one link.
            async def many() -> list[int]:
                async with httpx.AsyncClient(base_url=b.url, headers={"Host": "app.example.com"}, timeout=20) as c:
                    responses = await asyncio.gather(*(c.get(f"/n/{i}") for i in range(40)))
                return [r.status_code for r in responses]

            assert asyncio.run(many()) == [200] * 40
            assert "peer link to" in b.log_text() and "is up" in b.log_text()
            assert "peer link from" in a.log_text()

            # The connector killed: A loses the tunnel, tells B; B answers 530 within seconds.
            topology.kill_connector()
            elapsed = wait_for_status(b, "app.example.com", 530, timeout=10)
            assert elapsed < 5, elapsed

            # Back again, then A dies with a request in flight: 502 for it at once, 530 afterwards, no hang.
            topology.start_connector()
            wait_for_status(b, "app.example.com", 200, timeout=20)

            async def in_flight() -> tuple[int, float]:
                async with httpx.AsyncClient(base_url=b.url, headers={"Host": "app.example.com"}, timeout=20) as c:
                    slow = asyncio.ensure_future(c.get("/slow"))
                    await asyncio.sleep(1)
                    killed = time.monotonic()
                    a.process.send_signal(signal.SIGKILL)
                    response = await slow
                    return response.status_code, time.monotonic() - killed

            status, after = asyncio.run(in_flight())
            assert status == 502 and after < 2, (status, after)
            a.process.wait(10)
            for _ in range(5):
                started = time.monotonic()
                assert visit(b, "app.example.com", timeout=10).status_code == 530
                assert time.monotonic() - started < 2
            # Reconciled as lost after SERVER_INSTANCE_DEADLINE_SECONDS: still 530, and the link is given up.
            time.sleep(8)
            assert visit(b, "app.example.com").status_code == 530
            assert "is no longer alive: its peer link is closed" in b.log_text()
