"""The edge role as its own process, started exactly as production starts it (uvicorn, uvloop, httptools with
corked writes, websockets-sansio, `edge.asgi:application`): a real connector process dials it, and a request for a
public hostname is served through it from a real origin. Also: the whole control plane (`controlplane.asgi`) under
uvicorn, and the corked transport's rules."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from controlplane.actors import Actor
from controlplane.services.zones import zone_create, zone_mark_verified
from tests import live_server
from tunnels.services import tunnel_config_update, tunnel_create, tunnel_token

pytestmark = [pytest.mark.django_db(transaction=True)]

BIN = Path(sys.executable).parent
# The production command line of the edge role (docker-compose.yml `edge`, docs/benchmarks.md "Edge").
EDGE_SCRIPT = str(Path(__file__).resolve().parents[2] / "scripts" / "edge")


class Origin(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        body = json.dumps({"path": self.path, "host": self.headers["Host"], "ray": self.headers["Cf-Ray"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def origin_server() -> Iterator[int]:
    with live_server.serve_in_thread(Origin) as port:
        yield port


@contextlib.contextmanager
def process(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(  # noqa: S603
            cmd,
            cwd=str(settings.BASE_DIR),
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            print(f"--- {log_path.name} ---\n{log_path.read_text(errors='replace')[-8000:]}")


def server_env() -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "DATABASE_URL": live_server.test_database_url(),
        "DATA_DIR": str(settings.DATA_DIR),
        "LOG_LEVEL": "WARNING",
    }


def get(port: int, path: str, host: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def answer_headers(port: int, path: str, host: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        response.read()
        return response.headers
    finally:
        conn.close()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout:.0f} s (last: {last!r})")


@pytest.mark.slow
def test_edge_process_under_uvicorn_serves_a_public_hostname_through_a_real_connector(org_a, tmp_path):
    zone = zone_create(organisation=org_a, name="example.com", actor=Actor.cli())
    zone_mark_verified(zone=zone, actor=Actor.cli())
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=Actor.cli())
    logs = tmp_path
    port = live_server.free_port()
    with origin_server() as origin_port:
        config = {
            "ingress": [
                {"hostname": "app.example.com", "service": f"http://127.0.0.1:{origin_port}"},
                {"service": "http_status:404"},
            ]
        }
        tunnel_config_update(tunnel=tunnel, config=config, actor=Actor.cli())
        edge_cmd = [sys.executable, EDGE_SCRIPT, "--host=127.0.0.1", f"--port={port}", "--log-level=info"]
        with process(edge_cmd, logs / "edge.log", server_env()) as edge:
            wait_for(lambda: get(port, "/readyz", "127.0.0.1")[0] == 200, 30, "the edge answers /readyz")
            # No connector yet: the hostname is routed (the route table was loaded at start-up) but has none.
            assert get(port, "/", "app.example.com")[0] == 530
            connector_cmd = [sys.executable, "-m", "connector", "run", "--token", tunnel_token(tunnel)]
            connector_cmd += ["--edge", f"http://127.0.0.1:{port}", "--metrics", "127.0.0.1:0"]
            with process(connector_cmd, logs / "connector.log"):
                status, headers, body = wait_for(
                    lambda: (answer := get(port, "/hello?x=1", "app.example.com")) and answer[0] == 200 and answer,
                    30,
                    "a public hostname is served through the connector",
                )
                seen = json.loads(body)
                assert seen["path"] == "/hello?x=1" and seen["host"] == "app.example.com"
                assert headers["cf-ray"] == seen["ray"]
                # The origin's Server and Date, once each (uvicorn would add its own: --no-server/date-header).
                assert headers["server"].startswith("BaseHTTP") and headers["date"]
                assert len(answer_headers(port, "/", "app.example.com").get_all("Server")) == 1
            # The control plane is not served here: a clear 421 that names where it is.
            status, headers, body = get(port, "/login/", "127.0.0.1")
            assert status == 421 and b"edge" in body and settings.PUBLIC_URL.encode() in body
            assert edge.poll() is None


@pytest.mark.slow
def test_the_whole_control_plane_runs_under_uvicorn(org_a, tmp_path):
    logs = tmp_path
    port = live_server.free_port()
    cmd = [str(BIN / "uvicorn"), "controlplane.asgi:application", "--loop=uvloop", "--http=httptools"]
    cmd += ["--ws=websockets-sansio", "--host=127.0.0.1", f"--port={port}", "--no-access-log"]
    with process(cmd, logs / "controlplane.log", server_env()):
        wait_for(lambda: get(port, "/healthz", "127.0.0.1")[0] == 200, 30, "the control plane answers /healthz")
        status, _, body = get(port, "/login/", "127.0.0.1")
        assert status == 200 and b"<form" in body
        assert get(port, "/readyz", "127.0.0.1")[0] == 200
        assert get(port, "/", "nope.example.org")[0] == 404  # the edge, inside the same process


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 7


@pytest.mark.django_db(transaction=False)
async def test_corked_writes_of_one_turn_go_out_together_and_close_flushes_first():
    import asyncio

    from edge.http import CorkedTransport

    real = FakeTransport()
    corked = CorkedTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    corked.write(b"")
    corked.write(b"hi")
    assert real.writes == [] and corked.get_write_buffer_size() == 7 + 40
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"]
    corked.write(b"bye")
    corked.close()
    assert real.writes[-1] == b"bye" and real.closed and corked.is_closing()


@pytest.mark.django_db(transaction=False)
async def test_keep_alive_closes_an_idle_connection_after_its_timeout_counted_from_the_last_response():
    """One keep-alive timer per connection (edge/http.py), not one per request: a connection in use is never closed
    by a timer armed before its latest request, and an idle one is closed once it has been idle for the timeout."""
    import asyncio

    import uvicorn

    from edge.http import HttpToolsProtocol

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    sock = socket_bound()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, http=HttpToolsProtocol, lifespan="off", timeout_keep_alive=1, log_level="warning", loop="none"
    )
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        loop = asyncio.get_running_loop()

        async def request() -> None:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            assert head.startswith(b"HTTP/1.1 200") and await reader.readexactly(2) == b"ok"

        started = loop.time()
        for _ in range(4):  # busy for 1.8 s: longer than the timeout, never idle for it
            await request()
            await asyncio.sleep(0.6)
        await request()
        last = loop.time()
        assert last - started > 1.8
        assert await asyncio.wait_for(reader.read(1), 3) == b""  # closed by the server, once idle for 1 s
        idle = loop.time() - last
        assert 0.9 <= idle <= 2.2, idle
        writer.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


def socket_bound():
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    return sock
