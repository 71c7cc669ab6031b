"""The edge end to end, through real processes: visitors (http.client, raw sockets, `websockets`) → a real server
on the test database (tests/live_server.py; every test twice: daphne as `make run` serves, and the edge role's
production uvicorn from scripts/edge) → the real connector (`python -m connector run`) → real origins on
loopback (tests/edge/e2e_origin.py, its own process).

One module-scoped world is started once (the server, two origins, a connector per organisation, the data made
through the services); tests that kill connectors get their own tunnel and connector processes. The tests are
transactional (what the world writes is committed, so the server sees it) with `available_apps` naming an app
without models: a transactional test flushes the tables of the available apps when it ends, so the world's
tunnels outlive each test. The world's fixture flushes the whole database when the module is done.

Large transfers are 1 GiB each way (measured on the 2-core machines: 7-13 s each, 80-150 MiB/s, with the
server's and the connector's RSS growing by under 1 MiB); E2E_LARGE_BYTES sets another size, e.g. 268435456 for
a quicker run.

Over ~600 lines on purpose: one module-scoped world of real processes (server, origins, connectors) serves every
test here; split into several modules, each would start its own world (tens of seconds each, twice: daphne and
uvicorn).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect

from connector import protocol
from tests.edge.e2e_origin import BLOCK, pattern
from tests.live_server import LiveServer, free_port, run_daphne, start_connector

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, available_apps=["django.contrib.staticfiles"])]

MiB = 1024 * 1024
LARGE_BYTES = int(os.environ.get("E2E_LARGE_BYTES", str(1024 * MiB)))
RSS_LIMIT = 64 * MiB
RESPONSE_TIMEOUT = 3  # EDGE_RESPONSE_TIMEOUT_SECONDS of the world's server
VISITOR_TIMEOUT = 30.0  # no visitor socket ever waits longer than this
REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------ processes


class OriginProcess:
    """tests/edge/e2e_origin.py in a subprocess; its ports come back on stdout."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.log = open(log_dir / f"origin-{name}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "tests.edge.e2e_origin", name],
            cwd=str(REPO),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        line = _readline_with_timeout(self.process, 20)
        ports = json.loads(line)
        self.http, self.tls, self.ws = ports["http"], ports["tls"], ports["ws"]

    def call(self, path: str) -> bytes:
        """A request to the origin itself (not through the edge), e.g. to open a gate."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=10) as response:  # noqa: S310
            return response.read()

    def release(self, gate: str) -> None:
        self.call(f"/release?gate={gate}")

    def wait_for_gate(self, gate: str, timeout: float = 10.0) -> None:
        """Until a request waits on the gate at the origin (it went all the way through)."""
        deadline = time.monotonic() + timeout
        while self.call(f"/waiting?gate={gate}") != b"yes":
            assert time.monotonic() < deadline, f"no request reached the origin's gate {gate}"
            time.sleep(0.05)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.log.close()


def _readline_with_timeout(process: subprocess.Popen, timeout: float) -> bytes:
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        process.kill()
        raise RuntimeError(f"the origin did not start within {timeout} s")
    return result[0]


class ConnectorProcess:
    """`python -m connector run` against the server, with its metrics endpoint on a known port."""

    def __init__(self, token: str, server: LiveServer, log_dir: Path, name: str, ha_connections: int = 2) -> None:
        self.metrics_port = free_port()
        self.log_path = log_dir / f"connector-{name}.log"
        self.process = start_connector(
            token,
            server.url,
            self.log_path,
            ha_connections=ha_connections,
            metrics=f"127.0.0.1:{self.metrics_port}",
            extra=("--grace-period", "2"),
        )
        self.pid = self.process.pid

    def metric(self, name: str) -> float:
        """A sample of the connector's /metrics (0 when absent), e.g. 'frames_received_total{kind="REQUEST"}'."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            for line in response.read().decode().splitlines():
                if line.startswith(f"zt_connector_{name} "):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    @property
    def requests(self) -> int:
        return int(self.metric('frames_received_total{kind="REQUEST"}'))

    def wait_ready(self, connections: int = 1, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the connector exited ({self.process.returncode}); see {self.log_path}")
            with contextlib.suppress(OSError, ValueError):
                if self.metric("connections_ready") >= connections and self.metric("config_version") >= 1:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the connector was not ready within {timeout} s; see {self.log_path}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def rss(pid: int) -> int:
    """Resident set size of a process, in bytes (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class RssWatch:
    """The peak RSS of some processes while a block runs, sampled every 50 ms in a thread."""

    def __init__(self, **pids: int) -> None:
        self.pids = pids
        self.start = {name: rss(pid) for name, pid in pids.items()}
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for name, pid in self.pids.items():
                with contextlib.suppress(OSError, RuntimeError):
                    self.peak[name] = max(self.peak[name], rss(pid))

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def growth(self) -> dict[str, int]:
        return {name: self.peak[name] - self.start[name] for name in self.pids}


# ------------------------------------------------------------------------------------------------ the world


@dataclass
class World:
    server: LiveServer
    origin_a: OriginProcess
    origin_b: OriginProcess
    connector_a: ConnectorProcess | None = None
    connector_b: ConnectorProcess | None = None
    log_dir: Path = Path()
    org_a: object = None
    tunnel_a: object = None
    api_token_a: str = ""
    tunnels: dict[str, object] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    config_a: dict = field(default_factory=dict)


def config_a(origin: OriginProcess, closed_port: int) -> dict:
    http = f"http://127.0.0.1:{origin.http}"
    return {
        "ingress": [
            {"hostname": "app.example.com", "service": http},
            {"hostname": "ws.example.com", "service": f"http://127.0.0.1:{origin.ws}"},
            {"hostname": "down.example.com", "service": f"http://127.0.0.1:{closed_port}"},
            {"hostname": "tls.example.com", "service": f"https://127.0.0.1:{origin.tls}"},
            {"hostname": "teapot.example.com", "service": "http_status:418"},
            {"service": "http_status:404"},
        ]
    }


def simple_config(hostname: str, origin: OriginProcess) -> dict:
    return {
        "ingress": [
            {"hostname": hostname, "service": f"http://127.0.0.1:{origin.http}"},
            {"service": "http_status:404"},
        ]
    }


# Every test runs twice: against daphne (the embedded `make run`) and against the edge role's production server
# (scripts/edge: uvicorn with edge.http's protocol, the early flush of batches, websockets-sansio), each serving the
# whole control plane so that the world is set up the same way.
@pytest.fixture(scope="module", params=["daphne", "uvicorn"])
def world(request, django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[World]:
    from django.core.management import call_command

    from controlplane.actors import Actor
    from controlplane.services.zones import zone_create, zone_mark_verified
    from tests.conftest import make_token
    from tests.factories import OrganisationFactory
    from tunnels.services import tunnel_config_update, tunnel_create, tunnel_token

    log_dir = tmp_path_factory.mktemp("edge-e2e")
    origin_a = OriginProcess("alpha", log_dir)
    origin_b = OriginProcess("bravo", log_dir)
    closed_port = free_port()  # nothing listens there
    world = World(server=None, origin_a=origin_a, origin_b=origin_b, log_dir=log_dir)  # type: ignore[arg-type]
    try:
        with django_db_blocker.unblock():
            actor = Actor.cli()
            org_a = OrganisationFactory(team_name="alpha", display_name="Alpha")
            org_b = OrganisationFactory(team_name="bravo", display_name="Bravo")
            zone_mark_verified(zone=zone_create(organisation=org_a, name="example.com", actor=actor), actor=actor)
            zone_mark_verified(zone=zone_create(organisation=org_b, name="example.org", actor=actor), actor=actor)
            world.org_a = org_a
            world.api_token_a = make_token(org_a)
            configs = {
                "a": (org_a, config_a(origin_a, closed_port)),
                # Org B's connector sends everything to its own origin: a request of org A's that reached this
                # tunnel would be answered by "bravo".
                "b": (
                    org_b,
                    {
                        "ingress": [
                            {"hostname": "app.example.org", "service": f"http://127.0.0.1:{origin_b.http}"},
                            {"service": f"http://127.0.0.1:{origin_b.http}"},
                        ]
                    },
                ),
                "idle": (org_a, simple_config("idle.example.com", origin_a)),  # never gets a connector
                "kill": (org_a, simple_config("kill.example.com", origin_a)),
                "pair": (org_a, simple_config("pair.example.com", origin_a)),
            }
            for key, (org, config) in configs.items():
                tunnel = tunnel_create(organisation=org, name=f"tunnel-{key}", actor=actor)
                tunnel_config_update(tunnel=tunnel, config=config, actor=actor)
                world.tunnels[key] = tunnel
                world.tokens[key] = tunnel_token(tunnel)
            world.tunnel_a = world.tunnels["a"]
            world.config_a = configs["a"][1]
        env = {
            "EDGE_RESPONSE_TIMEOUT_SECONDS": str(RESPONSE_TIMEOUT),
            "CONNECTOR_HEARTBEAT_SECONDS": "5",
            "EDGE_LOCATION": "e2e",
        }
        with run_daphne(env=env, log_dir=str(log_dir), server=request.param) as server:
            world.server = server
            world.connector_a = ConnectorProcess(world.tokens["a"], server, log_dir, "a")
            world.connector_b = ConnectorProcess(world.tokens["b"], server, log_dir, "b")
            try:
                world.connector_a.wait_ready(2)
                world.connector_b.wait_ready(2)
                yield world
            finally:
                for connector in (world.connector_a, world.connector_b):
                    connector.stop()
                print(f"--- {server.server} log ({server.log_path}) ---\n{server.log_text()[-20000:]}")
                for path in sorted(log_dir.glob("connector-*.log")) + sorted(log_dir.glob("origin-*.log")):
                    print(f"--- {path.name} ---\n{path.read_text(errors='replace')[-3000:]}")
    finally:
        origin_a.stop()
        origin_b.stop()
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)


# ------------------------------------------------------------------------------------------------ visitors


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)


def visit(
    server: LiveServer,
    host: str,
    path: str = "/",
    *,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
    chunks: list[bytes] | None = None,
    timeout: float = VISITOR_TIMEOUT,
) -> Answer:
    """One request with full control of the headers (repeated ones too) and the body's framing."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        for name, value in headers or []:
            conn.putheader(name, value)
        if chunks is not None:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders(iter(chunks), encode_chunked=True)
        else:
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
        response = conn.getresponse()
        return Answer(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------------ HTTP


def test_get_with_query_and_repeated_headers_reaches_the_origin_as_sent(world):
    answer = visit(
        world.server,
        "app.example.com",
        "/echo?a=1&b=%20two&a=3",
        headers=[("X-Rep", "first"), ("X-Rep", "second"), ("Accept", "*/*")],
    )
    assert answer.status == 200, answer.body
    seen = answer.json()
    assert seen["origin"] == "alpha" and seen["method"] == "GET" and seen["target"] == "/echo?a=1&b=%20two&a=3"
    assert [v for k, v in seen["headers"] if k.lower() == "x-rep"] in (["first", "second"], ["first, second"])
    assert [v for k, v in seen["headers"] if k.lower() == "host"] == ["app.example.com"]
    assert seen["body_length"] == 0
    # The target byte for byte: percent-encodings (an encoded slash too) are not decoded on the way.
    raw = "/echo/caf%C3%A9/a%2Fb;p=1?q=%2F%20&q=x+y"
    assert visit(world.server, "app.example.com:8080", raw).json()["target"] == raw


def test_post_with_content_length_and_chunked_bodies(world):
    body = bytes(range(256)) * 1000 + b"\r\n0\r\n\r\n tail"
    answer = visit(world.server, "app.example.com", "/echo", method="POST", body=body)
    seen = answer.json()
    assert answer.status == 200 and seen["method"] == "POST"
    assert seen["body"].encode("latin-1") == body
    assert [v for k, v in seen["headers"] if k.lower() == "content-length"] == [str(len(body))]

    chunks = [b"first;", b"x" * 70_000, b"last"]
    answer = visit(world.server, "app.example.com", "/echo?chunked", method="PUT", chunks=chunks)
    seen = answer.json()
    assert answer.status == 200 and seen["method"] == "PUT"
    assert seen["body"].encode("latin-1") == b"".join(chunks)
    # No length was declared, so none is invented: the body reaches the origin chunked.
    assert seen["chunked"] and not [v for k, v in seen["headers"] if k.lower() == "content-length"]


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data; boundary=xyz", "application/x-www-form-urlencoded"],
    ids=["multipart", "form"],
)
def test_form_posts_reach_the_origin_untouched_even_when_not_well_formed(world, content_type):
    body = b"--not-the-boundary\r\nthis is not multipart&a=%zz" * 3000  # over Twisted's 100 kB in-memory limit
    answer = visit(
        world.server, "app.example.com", "/echo", method="POST", body=body, headers=[("Content-Type", content_type)]
    )
    assert answer.status == 200, answer.body[:500]
    assert answer.json()["body"].encode("latin-1") == body


def test_head_keeps_the_length_and_sends_no_body_on_a_connection_that_stays_usable(world):
    conn = http.client.HTTPConnection("127.0.0.1", world.server.port, timeout=VISITOR_TIMEOUT)
    try:
        conn.request("HEAD", "/download?size=12345", headers={"Host": "app.example.com"})
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("content-length") == "12345"
        assert response.read() == b""
        conn.request("GET", "/whoami", headers={"Host": "app.example.com"})  # the same connection
        assert conn.getresponse().read() == b"alpha"
    finally:
        conn.close()


def test_response_status_headers_and_body_come_back_as_the_origin_sent_them(world):
    answer = visit(world.server, "app.example.com", "/respond?status=201")
    assert answer.status == 201
    assert answer.body == b"exactly these bytes\x00\xff"
    assert answer.all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert answer.all("X-Multi") == ["one", "two"]
    assert answer.header("Content-Type") == "application/octet-stream"
    assert answer.header("Content-Length") == str(len(answer.body))
    assert answer.header(
        "cf-ray",
    ) and answer.header("cf-ray").endswith("-e2e")


# ------------------------------------------------------------------------------------------------ large streams


def expected_crc(size: int) -> int:
    block, crc, left = pattern(), 0, size
    while left > 0:
        piece = block if left >= len(block) else block[:left]
        crc = zlib.crc32(piece, crc)
        left -= len(piece)
    return crc


def report(what: str, size: int, seconds: float, growth: dict[str, int]) -> None:
    rates = ", ".join(f"{name} +{value / MiB:.1f} MiB" for name, value in growth.items())
    print(
        f"{what}: {size / MiB:.0f} MiB in {seconds:.1f} s ({size / MiB / seconds:.0f} MiB/s); peak RSS growth {rates}"
    )


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_large_download_streams_with_bounded_memory(world, chunked):
    size = LARGE_BYTES
    conn = http.client.HTTPConnection("127.0.0.1", world.server.port, timeout=VISITOR_TIMEOUT)
    received, crc = 0, 0
    started = time.monotonic()
    with RssWatch(server=world.server.process.pid, connector=world.connector_a.pid) as watch:
        conn.request("GET", f"/download?size={size}&chunked={int(chunked)}", headers={"Host": "app.example.com"})
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("content-length") == (None if chunked else str(size))
        while chunk := response.read(MiB):
            received += len(chunk)
            crc = zlib.crc32(chunk, crc)
    elapsed = time.monotonic() - started
    conn.close()
    report(f"download ({'chunked' if chunked else 'content-length'})", received, elapsed, watch.growth())
    assert received == size and crc == expected_crc(size)
    assert max(watch.growth().values()) < RSS_LIMIT, watch.growth()


def test_a_visitor_who_stops_reading_holds_back_the_origin_not_the_servers_memory(world):
    """The server must not buffer what the visitor does not read: the edge grants the connector more only as
    the visitor's socket takes it, so a stalled download costs a window, not the origin's whole body."""
    sock = socket.create_connection(("127.0.0.1", world.server.port), timeout=VISITOR_TIMEOUT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        with RssWatch(server=world.server.process.pid, connector=world.connector_a.pid) as watch:
            sock.sendall(b"GET /download?size=%d HTTP/1.1\r\nHost: app.example.com\r\n\r\n" % LARGE_BYTES)
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
            time.sleep(3)  # reading nothing, while the origin could send hundreds of MiB
            stalled = watch.growth()
        print(f"stalled download: peak RSS growth {stalled}")
        assert max(stalled.values()) < RSS_LIMIT, stalled
    finally:
        sock.close()


# Chunked first: a leak in one variant raises the server's RSS for good (the allocator keeps freed memory), which
# would hide the same leak in a variant measured after it.
def test_a_visitor_who_goes_away_mid_download_stops_the_origin(world):
    """The stream is cancelled when the visitor's connection closes: the tunnel does not carry the rest of a 1 GiB
    body to nobody, and the connector drops its origin connection."""
    tag = f"gone-{uuid.uuid4().hex[:6]}"
    sock = socket.create_connection(("127.0.0.1", world.server.port), timeout=VISITOR_TIMEOUT)
    sock.sendall(b"GET /download?size=%d&tag=%s HTTP/1.1\r\nHost: app.example.com\r\n\r\n" % (1024 * MiB, tag.encode()))
    received = 0
    while received < 4 * MiB:
        chunk = sock.recv(MiB)
        assert chunk
        received += len(chunk)
    sock.close()
    deadline = time.monotonic() + 10
    while (progress := json.loads(world.origin_a.call(f"/progress?tag={tag}")))["state"] == "sending":
        assert time.monotonic() < deadline, f"the origin is still sending: {progress}"
        time.sleep(0.1)
    assert progress["state"] == "aborted" and progress["sent"] < 256 * MiB, progress


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_large_upload_streams_with_bounded_memory(world, chunked):
    size = LARGE_BYTES
    block = pattern()
    conn = http.client.HTTPConnection("127.0.0.1", world.server.port, timeout=VISITOR_TIMEOUT)
    started = time.monotonic()
    with RssWatch(server=world.server.process.pid, connector=world.connector_a.pid) as watch:
        conn.putrequest("POST", "/upload", skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", "app.example.com")
        conn.putheader("Content-Type", "application/octet-stream")
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        else:
            conn.putheader("Content-Length", str(size))
        conn.endheaders()
        left = size
        while left > 0:
            piece = block if left >= len(block) else block[:left]
            left -= len(piece)
            conn.send(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        answer = response.read()
    elapsed = time.monotonic() - started
    conn.close()
    report(f"upload ({'chunked' if chunked else 'content-length'})", size, elapsed, watch.growth())
    assert response.status == 200, answer
    assert json.loads(answer) == {"size": size, "crc32": expected_crc(size)}
    assert max(watch.growth().values()) < RSS_LIMIT, watch.growth()


def test_an_upload_longer_than_the_response_timeout_is_not_an_origin_timeout(world):
    """The response timeout counts from the end of the request: the origin reads this body for 4 s (the world's
    timeout is 3 s) and answers as soon as it has it. (64 MiB: far more than the sockets on the way buffer, ~10
    MiB, so the edge is still sending when the timeout would have struck.)"""
    size = 64 * MiB
    body = pattern() * (size // BLOCK)
    started = time.monotonic()
    answer = visit(world.server, "app.example.com", f"/upload?rate={16 * MiB}", method="POST", body=body)
    assert answer.status == 200, answer.body[:300]
    assert answer.json() == {"size": size, "crc32": zlib.crc32(body)}
    assert time.monotonic() - started > RESPONSE_TIMEOUT


# ------------------------------------------------------------------------------------------------ websockets


def test_websocket_echo_with_subprotocol_text_binary_and_the_close_code(world):
    port = world.server.port

    async def session() -> tuple[str | None, list, int | None, str | None]:
        async with ws_connect(
            f"ws://ws.example.com:{port}/chat?room=1",
            host="127.0.0.1",
            port=port,
            subprotocols=["chat.v2", "chat.v1"],
            open_timeout=10,
            close_timeout=5,
            max_size=2**22,
        ) as ws:
            echoed = []
            for message in ["hello", "héllo ✓", b"\x00\x01binary\xff", b"z" * 300_000, "", b""]:
                await ws.send(message)
                echoed.append(await asyncio.wait_for(ws.recv(), 10))
            # A burst beyond the stream's window (256 KiB), sent without waiting for the echoes.
            burst = [bytes([i]) * 128 * 1024 for i in range(8)]
            for message in burst:
                await ws.send(message)
            echoed += [await asyncio.wait_for(ws.recv(), 10) for _ in burst]
            await ws.send("close:4001:done here")
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return ws.subprotocol, echoed, ws.close_code, ws.close_reason

    subprotocol, echoed, code, reason = asyncio.run(session())
    assert subprotocol == "chat.v2"
    assert echoed[:6] == ["hello", "héllo ✓", b"\x00\x01binary\xff", b"z" * 300_000, "", b""]
    assert echoed[6:] == [bytes([i]) * 128 * 1024 for i in range(8)]
    assert (code, reason) == (4001, "done here")


@pytest.mark.parametrize("code", [1001, 1011, 1000, 3000])
def test_the_origins_close_code_and_reason_reach_the_visitor(world, code):
    port = world.server.port

    async def session() -> tuple[int | None, str | None]:
        async with ws_connect(f"ws://ws.example.com:{port}/", host="127.0.0.1", port=port, open_timeout=10) as ws:
            await ws.send(f"close:{code}:bye from the origin")
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return ws.close_code, ws.close_reason

    assert asyncio.run(session()) == (code, "bye from the origin")


def test_a_websocket_origin_slow_to_read_holds_the_visitor_back_within_the_stream_window(world):
    """8 MiB sent at once while the origin reads nothing: the edge may send the connector only what it granted
    (exceeding the window is a FLOW_CONTROL_ERROR that resets the stream)."""
    port = world.server.port
    burst = [bytes([i]) * 256 * 1024 for i in range(32)]

    async def session() -> list[bytes]:
        async with ws_connect(
            f"ws://ws.example.com:{port}/slow", host="127.0.0.1", port=port, open_timeout=10, max_size=2**22
        ) as ws:
            sender = asyncio.ensure_future(asyncio.gather(*(ws.send(message) for message in burst)))
            echoed = [await asyncio.wait_for(ws.recv(), 15) for _ in burst]
            await asyncio.wait_for(sender, 5)
            return echoed

    echoed = asyncio.run(session())
    assert [len(m) for m in echoed] == [len(m) for m in burst] and echoed == burst


def test_a_websocket_message_too_large_for_a_frame_is_refused_with_1009(world):
    """A message the protocol cannot carry in one frame (MAX_FRAME_SIZE) costs its own websocket, with the code
    the connector gives an origin in the same case, never the tunnel's connection."""
    port = world.server.port

    async def session() -> tuple[int | None, str | bytes]:
        options = {"host": "127.0.0.1", "port": port, "open_timeout": 10, "max_size": 2**22}
        async with ws_connect(f"ws://ws.example.com:{port}/", **options) as ws:
            # Just over what a frame carries (daphne itself refuses messages over 1 MiB; uvicorn takes 16 MiB).
            await ws.send(b"x" * (protocol.MAX_PAYLOAD_SIZE + 4))
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        async with ws_connect(f"ws://ws.example.com:{port}/", **options) as again:
            await again.send("still there?")
            return ws.close_code, await asyncio.wait_for(again.recv(), 10)

    code, echoed = asyncio.run(session())
    assert code == 1009
    assert echoed == "still there?"


def test_a_websocket_visitor_who_stops_reading_holds_back_the_origin_not_the_servers_memory(world):
    port = world.server.port
    mib = 256

    async def session() -> tuple[dict[str, int], int]:
        async with ws_connect(
            f"ws://ws.example.com:{port}/flood?mib={mib}", host="127.0.0.1", port=port, open_timeout=10, max_size=2**20
        ) as ws:
            ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            ws.transport.pause_reading()
            with RssWatch(server=world.server.process.pid, connector=world.connector_a.pid) as watch:
                await asyncio.sleep(3)  # reading nothing, while the origin could send it all
            ws.transport.resume_reading()
            received = 0
            with contextlib.suppress(websockets.exceptions.ConnectionClosedOK):
                while True:
                    received += len(await asyncio.wait_for(ws.recv(), 20))
            return watch.growth(), received

    growth, received = asyncio.run(session())
    print(f"stalled websocket: peak RSS growth {growth}")
    assert received == mib * MiB
    assert max(growth.values()) < RSS_LIMIT, growth


# ------------------------------------------------------------------------------------------------ incremental


@pytest.mark.parametrize("path", ["/sse", "/chunks"])
def test_events_and_chunks_reach_the_visitor_before_the_origin_sends_the_next(world, path):
    gate = f"incremental-{path[1:]}-{uuid.uuid4().hex[:6]}"
    conn = http.client.HTTPConnection("127.0.0.1", world.server.port, timeout=10)
    try:
        conn.request("GET", f"{path}?gate={gate}", headers={"Host": "app.example.com", "Accept": "text/event-stream"})
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("content-length") is None
        first = b"id: 1\ndata: first\n\n" if path == "/sse" else b"part one;"
        received = b""
        while len(received) < len(first):  # the origin holds the second part until the gate opens
            chunk = response.read1(65536)
            assert chunk, "the response ended early"
            received += chunk
        assert received == first
        world.origin_a.release(gate)
        received += response.read()
        assert received == first + (b"id: 2\ndata: second\n\n" if path == "/sse" else b"part two")
        if path == "/sse":
            assert response.getheader("content-type") == "text/event-stream"
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------------ concurrency


def test_a_hundred_concurrent_requests_are_multiplexed_and_all_correct(world):
    import httpx

    async def run() -> list[tuple[int, int, bytes, bytes]]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=world.server.url, limits=limits, timeout=VISITOR_TIMEOUT) as client:

            async def one(i: int):
                headers = {"Host": "app.example.com"}
                if i % 2:
                    body = os.urandom(16) * 1000 + str(i).encode()
                    response = await client.post(f"/echo?i={i}", content=body, headers=headers)
                    return i, response.status_code, body, response.json()["body"].encode("latin-1")
                size = 300_000 + i  # beyond the stream window: granted as the visitor reads
                response = await client.get(f"/download?size={size}", headers=headers)
                return i, response.status_code, (pattern() * 5)[:size], response.content

            return await asyncio.gather(*(one(i) for i in range(100)))

    results = asyncio.run(run())
    failures = [(i, status) for i, status, expected, got in results if status != 200 or expected != got]
    assert not failures, failures


# ------------------------------------------------------------------------------------------------ failures


def test_connector_killed_mid_request_gives_502_or_a_cut_body_then_530(world):
    origin, server = world.origin_a, world.server
    connector = ConnectorProcess(world.tokens["kill"], server, world.log_dir, "kill")
    try:
        connector.wait_ready(2)
        assert visit(server, "kill.example.com", "/whoami").body == b"alpha"

        # One request waits for its head at the origin, another is halfway through its body.
        held: list[Answer | BaseException] = []

        def held_request() -> None:
            try:
                held.append(visit(server, "kill.example.com", "/hold?gate=kill-head", timeout=20))
            except BaseException as exc:  # reported below
                held.append(exc)

        waiter = threading.Thread(target=held_request, daemon=True)
        waiter.start()
        origin.wait_for_gate("kill-head")
        partial = socket.create_connection(("127.0.0.1", server.port), timeout=20)
        partial.sendall(b"GET /partial?gate=kill-body HTTP/1.1\r\nHost: kill.example.com\r\n\r\n")
        received = b""
        while len(received) < 512 * 1024:
            chunk = partial.recv(65536)
            assert chunk
            received += chunk
        origin.wait_for_gate("kill-body")

        killed_at = time.monotonic()
        connector.kill()

        waiter.join(15)
        assert held and isinstance(held[0], Answer), held
        answer = held[0]
        assert answer.status == 502
        assert answer.header("cf-ray") and answer.header("cf-ray").encode() in answer.body
        assert time.monotonic() - killed_at < 10

        head, _, body = received.partition(b"\r\n\r\n")
        assert b"content-length: 2097152" in head.lower()
        try:
            while chunk := partial.recv(65536):
                body += chunk
        except ConnectionResetError:
            pass
        assert len(body) < 2 * MiB  # cut short, and the connection closed: the visitor knows it is truncated
        assert time.monotonic() - killed_at < 10

        answer = visit(server, "kill.example.com", "/whoami", headers=[("Accept", "application/json")])
        assert answer.status == 530
        assert answer.json()["request_id"] == answer.header("cf-ray")
    finally:
        origin.release("kill-head")
        origin.release("kill-body")
        connector.stop()


def put_config(world: World, config: dict) -> int:
    request = urllib.request.Request(
        f"{world.server.url}/client/v4/accounts/{world.org_a.id.hex}/cfd_tunnel/{world.tunnel_a.id}/configurations",
        data=json.dumps({"config": config}).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {world.api_token_a}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
        return json.loads(response.read())["result"]["version"]


def test_a_configuration_change_mid_traffic_fails_no_request(world):
    stop = threading.Event()
    results: list[tuple[int, bytes]] = []

    def traffic(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                answer = visit(world.server, "app.example.com", f"/echo?w={n}&i={i}", method="POST", body=b"x" * i)
                ok = answer.status == 200 and answer.json()["body_length"] == i
                results.append((answer.status if ok else -answer.status, answer.body[:200]))
            except Exception as exc:
                results.append((0, repr(exc).encode()))

    workers = [threading.Thread(target=traffic, args=(n,), daemon=True) for n in range(3)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)
        changed = json.loads(json.dumps(world.config_a))
        changed["ingress"].insert(
            0, {"hostname": "new.example.com", "service": f"http://127.0.0.1:{world.origin_a.http}"}
        )
        put_config(world, changed)
        deadline = time.monotonic() + 15
        while visit(world.server, "new.example.com", "/whoami").status != 200:
            assert time.monotonic() < deadline, "the new hostname was never routed"
            time.sleep(0.1)
        put_config(world, world.config_a)
        time.sleep(1)
    finally:
        stop.set()
        for worker in workers:
            worker.join(VISITOR_TIMEOUT)
    failures = [result for result in results if result[0] != 200]
    assert len(results) > 30 and not failures, (len(results), failures[:5])


def test_two_connectors_share_the_traffic_and_one_takes_all_after_the_other_is_killed(world):
    server = world.server
    first = ConnectorProcess(world.tokens["pair"], server, world.log_dir, "pair-1")
    second = ConnectorProcess(world.tokens["pair"], server, world.log_dir, "pair-2")
    try:
        first.wait_ready(2)
        second.wait_ready(2)
        answers = [visit(server, "pair.example.com", f"/whoami?i={i}") for i in range(20)]
        assert [a.status for a in answers] == [200] * 20
        assert first.requests > 0 and second.requests > 0, (first.requests, second.requests)

        first.kill()
        before = second.requests
        answers = [visit(server, "pair.example.com", f"/whoami?after={i}") for i in range(30)]
        assert [(a.status, a.body) for a in answers] == [(200, b"alpha")] * 30
        assert second.requests - before >= 30
    finally:
        first.stop()
        second.stop()


def run_traffic(
    world: World, host: str, stop: threading.Event, results: list, workers: int = 3
) -> list[threading.Thread]:
    """Visitors in a loop until `stop`; each result is (status, body) or (0, the exception)."""

    def loop(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                answer = visit(world.server, host, f"/whoami?w={n}&i={i}", timeout=10)
                results.append((answer.status, answer.body[:300]))
            except Exception as exc:
                results.append((0, repr(exc)))

    threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    return threads


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_connector_leaving_under_traffic_loses_no_request(world, how):
    """Two connectors, visitors in a loop, one connector stops (drained, or killed): every request succeeds,
    including those that raced with the DRAIN or were sent on a connection already dead."""
    server = world.server
    first = ConnectorProcess(world.tokens["pair"], server, world.log_dir, f"leave-{how}-1")
    second = ConnectorProcess(world.tokens["pair"], server, world.log_dir, f"leave-{how}-2")
    stop = threading.Event()
    results: list[tuple[int, object]] = []
    threads: list[threading.Thread] = []
    try:
        first.wait_ready(2)
        second.wait_ready(2)
        threads = run_traffic(world, "pair.example.com", stop, results)
        time.sleep(0.5)
        if how == "SIGTERM":
            first.process.send_signal(signal.SIGTERM)
            first.process.wait(15)
        else:
            first.kill()
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        first.stop()
        second.stop()
    failures = [result for result in results if result != (200, b"alpha")]
    assert len(results) > 20 and not failures, (len(results), failures[:5])


# ------------------------------------------------------------------------------------------------ error pages


def assert_error_page(answer: Answer, status: int, *words: str) -> None:
    assert answer.status == status, (answer.status, answer.body[:300])
    ray = answer.header("cf-ray")
    assert ray and ray.endswith("-e2e")
    assert ray.encode() in answer.body
    assert answer.header("cache-control") == "no-store"
    text = answer.body.decode()
    for word in words:
        assert word in text, (word, text[:2000])


def test_unknown_hostname_is_404(world):
    answer = visit(world.server, "nope.example.net", "/", headers=[("Accept", "text/html")])
    assert_error_page(answer, 404, "nope.example.net")
    assert answer.header("content-type").startswith("text/html")


def test_no_connector_is_530_as_a_page_for_browsers_and_json_for_api_clients(world):
    answer = visit(world.server, "idle.example.com", "/", headers=[("Accept", "text/html,*/*")])
    assert_error_page(answer, 530, "no active connector", "1033")
    assert answer.header("content-type").startswith("text/html")
    answer = visit(world.server, "idle.example.com", "/", headers=[("Accept", "application/json")])
    assert_error_page(answer, 530)
    body = answer.json()
    assert body["success"] is False and body["errors"][0]["code"] == 1033
    assert body["request_id"] == answer.header("cf-ray")


def recorded_error(world: World, request_id: str, timeout: float = 10.0):
    """The origin error the server recorded under this request id (written within a second, off the request
    path), as the tunnel's page would list it."""
    from tunnels.models import OriginError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = OriginError.objects.for_org(world.org_a).filter(request_id=request_id).first()
        if row is not None:
            return row
        time.sleep(0.1)
    raise AssertionError(f"no origin error recorded for {request_id}")


def assert_connector_logged(world: World, request_id: str, *words: str, timeout: float = 5.0) -> None:
    """The connector's log line of the failed request: its reason under the same request id."""
    assert world.connector_a is not None
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in world.connector_a.log_path.read_text().splitlines() if f"cf-ray={request_id}" in line]
        if lines and all(word in lines[0] for word in words):
            return
        assert time.monotonic() < deadline, (request_id, words, lines)
        time.sleep(0.1)


def test_origin_connection_refused_is_502_whose_cause_goes_to_the_admins_not_the_visitor(world):
    answer = visit(world.server, "down.example.com", "/", headers=[("Accept", "application/json")])
    assert_error_page(answer, 502)
    message = answer.json()["errors"][0]["message"].lower()
    assert "refused" not in message and "127.0.0.1" not in message, message
    ray = answer.header("cf-ray")
    row = recorded_error(world, ray)
    assert row.status == 502 and "refused" in row.reason.lower() and row.hostname == "down.example.com"
    assert row.tunnel_id == world.tunnel_a.id
    assert_connector_logged(world, ray, "Request failed", "refused", "host=down.example.com")


def test_origin_timeout_is_504(world):
    started = time.monotonic()
    answer = visit(world.server, "app.example.com", "/sleep?s=15")
    assert_error_page(answer, 504)
    assert RESPONSE_TIMEOUT <= time.monotonic() - started < RESPONSE_TIMEOUT + 5
    assert b"sleep" not in answer.body and f"{RESPONSE_TIMEOUT} s".encode() not in answer.body
    row = recorded_error(world, answer.header("cf-ray"))
    assert row.status == 504 and row.path == "/sleep" and str(RESPONSE_TIMEOUT) in row.reason
    assert_connector_logged(world, row.request_id, "timed out at the edge", "path=/sleep")


def test_tls_verification_failure_is_502_and_only_the_admins_see_the_hint(world):
    answer = visit(world.server, "tls.example.com", "/", headers=[("Accept", "text/html")])
    assert_error_page(answer, 502, "Request ID", "Recent origin errors")
    text = answer.body.decode()
    for internal in ("certificate", "127.0.0.1", "originServerName", "noTLSVerify", "TLS"):
        assert internal not in text, (internal, text)
    ray = answer.header("cf-ray")
    row = recorded_error(world, ray)
    assert row.status == 502 and "certificate" in row.reason.lower()
    assert "originServerName" in row.reason or "noTLSVerify" in row.reason, row.reason
    assert_connector_logged(world, ray, "Request failed", "host=tls.example.com")


def test_http_status_rule_answers_its_status(world):
    answer = visit(world.server, "teapot.example.com", "/anything")
    assert answer.status == 418
    assert answer.header("cf-ray") and answer.header("cf-ray").endswith("-e2e")


# ------------------------------------------------------------------------------------------------ headers


def test_spoofed_edge_headers_are_replaced_by_the_edges_own(world):
    answer = visit(
        world.server,
        "app.example.com",
        "/echo",
        headers=[
            ("Cf-Connecting-IP", "6.6.6.6"),
            ("Cf-Ray", "forged-ray"),
            ("Cf-Access-Jwt-Assertion", "forged.jwt"),
            ("CF-Access-Authenticated-User-Email", "ceo@example.com"),
            ("X-Forwarded-Host", "evil.example.net"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            ("Cf-Visitor", '{"scheme":"https"}'),
            ("X-Custom", "kept"),
        ],
    )
    assert answer.status == 200
    seen: dict[str, list[str]] = {}
    for name, value in answer.json()["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    assert not [name for name in seen if name.startswith("cf-access-")]
    assert "x-forwarded-host" not in seen
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["cf-connecting-ip"] == ["127.0.0.1"]
    assert seen["cf-ray"] == [answer.header("cf-ray")]
    assert seen["cf-visitor"] == ['{"scheme":"http"}']
    assert seen["x-custom"] == ["kept"]


# ------------------------------------------------------------------------------------------------ tenancy


def test_each_organisations_hostname_reaches_only_its_own_tunnel_and_origin(world):
    before_b = world.connector_b.requests
    alpha = [visit(world.server, "app.example.com", "/whoami").body for _ in range(10)]
    bravo = [visit(world.server, "app.example.org", "/whoami").body for _ in range(10)]
    assert alpha == [b"alpha"] * 10
    assert bravo == [b"bravo"] * 10
    # Org B's connector saw its own ten requests and none of org A's (its catch-all rule would have answered them).
    assert world.connector_b.requests - before_b == 10
