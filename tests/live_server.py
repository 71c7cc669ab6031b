"""A real daphne server in a subprocess, serving the test database that pytest-django created (or, with
`run_daphne(server="uvicorn")`, the same application under the edge role's production uvicorn: scripts/edge).

Use the `daphne_server` fixture (it needs `transactional_db`, so what the test writes is committed and visible
to the server), or `run_daphne()` directly to start several servers or pass extra environment:

    from tests.live_server import daphne_server  # noqa: F401  (registers the fixture in this module)

    def test_something(daphne_server):
        urllib.request.urlopen(daphne_server.url + "/login/")

The server's stdout and stderr go to a log file; it is printed when the test fails (pytest shows output captured
during teardown only for failures) and its path is in every error this helper raises.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """DATABASE_URL of the database the test run is using right now (the test database, not the real one)."""
    from django.db import connection

    config = connection.settings_dict
    engine = config["ENGINE"]
    if engine.endswith("sqlite3"):
        name = str(config["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            raise RuntimeError("A live server needs a file-backed SQLite test database (set TEST NAME).")
        return f"sqlite:///{Path(name).resolve()}"
    if "postgresql" in engine or "postgis" in engine:
        user = quote(str(config.get("USER") or ""), safe="")
        password = quote(str(config.get("PASSWORD") or ""), safe="")
        credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = config.get("HOST") or "localhost"
        port = f":{config['PORT']}" if config.get("PORT") else ""
        return f"postgres://{credentials}{host}{port}/{quote(str(config['NAME']), safe='')}"
    raise RuntimeError(f"No live-server support for the database engine {engine}")


def daphne_executable() -> str:
    candidate = Path(sys.executable).parent / "daphne"
    return str(candidate) if candidate.exists() else "daphne"


@contextlib.contextmanager
def serve_in_thread(handler: type, server_class: type | None = None) -> Iterator[int]:
    """A stdlib HTTP server (`http.server.ThreadingHTTPServer` unless `server_class`) on a free loopback port, served
    from a daemon thread for the duration of the block; yields the port."""
    import http.server
    import threading

    server = (server_class or http.server.ThreadingHTTPServer)(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def start_connector(
    token: str,
    edge: str,
    log_path: Path,
    *,
    ha_connections: int = 2,
    metrics: str = "127.0.0.1:0",
    extra: tuple[str, ...] = ("--loglevel", "debug"),
) -> subprocess.Popen[bytes]:
    """A real connector process from this checkout (`python -m connector run`) dialling `edge`; its output is
    appended to `log_path`."""
    log = open(log_path, "ab")  # noqa: SIM115 (the child keeps writing to it)
    try:
        return subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "connector", "run", "--token", token, "--edge", edge]
            + ["--ha-connections", str(ha_connections), "--metrics", metrics, *extra],
            cwd=str(Path(__file__).resolve().parents[1]),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        log.close()  # the child has its own descriptor


@dataclass
class LiveServer:
    host: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    server: str = "daphne"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _fail(self, why: str) -> RuntimeError:
        what = self.server
        return RuntimeError(f"{what} {why} (log: {self.log_path})\n--- server log ---\n{self.log_text()[-8000:]}")

    def wait_until_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Until an HTTP request is answered (any status), or fail with the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                raise self._fail(f"exited with code {self.process.returncode if self.process else '?'} on startup")
            try:
                urllib.request.urlopen(f"{self.url}/login/", timeout=2)  # noqa: S310
                return
            except urllib.error.HTTPError:
                return  # an HTTP error status still means the server answers
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.1)
        raise self._fail(f"did not answer on {self.url} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def run_daphne(
    *,
    env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    log_dir: str | None = None,
    daphne_args: list[str] | None = None,
    startup_timeout: float = STARTUP_TIMEOUT,
    port: int | None = None,
    server: str = "daphne",
) -> Iterator[LiveServer]:
    """Start `daphne controlplane.asgi:application` on a free port (or `port`) against the test database; stop it
    after. `server="uvicorn"` serves the same application with the edge role's production command line
    (scripts/edge: uvicorn, uvloop, edge.http's protocol, websockets-sansio) instead.

    `env` adds to (or overrides) the server's environment, e.g. REDIS_URL for the production topology;
    `daphne_args` adds command-line options such as ["--websocket_timeout", "-1"]; `port` is for a server whose
    environment must name its own address (EDGE_PEER_URL)."""
    from django.conf import settings

    port = port or free_port()
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (kept open for the subprocess's lifetime)
        prefix=f"daphne-{port}-", suffix=".log", dir=log_dir, delete=False
    )
    server_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "DATABASE_URL": test_database_url(),
        "DATA_DIR": str(settings.DATA_DIR),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    if server == "uvicorn":
        server_env["EDGE_APP"] = "controlplane.asgi:application"
        cmd = [sys.executable, str(Path(settings.BASE_DIR) / "scripts" / "edge"), f"--host={host}", f"--port={port}"]
    else:
        cmd = [daphne_executable(), "-b", host, "-p", str(port), *(daphne_args or []), "controlplane.asgi:application"]
    live = LiveServer(host=host, port=port, log_path=Path(log_file.name), env=server_env, server=server)
    live.process = subprocess.Popen(  # noqa: S603
        cmd,
        cwd=str(settings.BASE_DIR),
        env=server_env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        live.wait_until_ready(startup_timeout)
        yield live
    finally:
        live.stop()
        log_file.close()


@pytest.fixture
def daphne_server(transactional_db) -> Iterator[LiveServer]:
    """A daphne server on the test database, for one test. Its log is printed if the test fails."""
    with run_daphne() as server:
        yield server
        # Captured during teardown: pytest shows it only when the test failed.
        print(f"--- daphne log ({server.log_path}) ---\n{server.log_text()[-20000:]}")
