"""The benchmark's server side: a migrated template data dir copied per scenario (SQLite, or PostgreSQL + Redis),
one server process (daphne or uvicorn, served as in production), and plain HTTP requests to it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, server_env
from bench.connectors.fleet import raise_fd_limit
from bench.connectors.procs import proc_cpu_seconds, proc_status_kb, rss_mb

BIN = Path(sys.executable).parent
SERVERS = ("daphne", "uvicorn")
PRODUCT_APP = "controlplane.asgi:application"


@dataclasses.dataclass
class Topology:
    production: bool
    postgres_url: str
    redis_url: str

    def env(self, data_dir: Path, database: str, port: int) -> dict[str, str]:
        env = server_env(data_dir, port)
        if self.production:
            env.update(
                CONTROLPLANE_MODE="production",
                DATABASE_URL=f"{self.postgres_url.rstrip('/')}/{database}",
                REDIS_URL=self.redis_url,
                SECRET_KEY="bench-secret-key-" + "x" * 40,
                DATA_ENCRYPTION_KEYS="YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtMDA=",
                ALLOWED_HOSTS="127.0.0.1,localhost",
            )
        return env


class DataDirs:
    """A migrated template (a data dir, or a PostgreSQL template database), copied for every scenario."""

    def __init__(self, topology: Topology, keep: bool) -> None:
        self.topology = topology
        self.keep = keep
        self.root = Path(tempfile.mkdtemp(prefix="bench-connectors-"))
        self.template = self.root / "template"
        self.template_db = f"bench_conn_tpl_{os.getpid()}"
        self.databases: list[str] = []

    def _pg(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"{self.topology.postgres_url.rstrip('/')}/postgres", autocommit=True) as conn:
            conn.execute(sql)

    def prepare(self) -> None:
        if self.topology.production:
            self._pg(f"DROP DATABASE IF EXISTS {self.template_db}")
            self._pg(f"CREATE DATABASE {self.template_db}")
            self.databases.append(self.template_db)
        env = self.topology.env(self.template, self.template_db, 8000)
        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True)

    def scenario(self, name: str) -> tuple[Path, str]:
        data_dir = self.root / name
        shutil.copytree(self.template, data_dir)
        database = ""
        if self.topology.production:
            database = f"bench_conn_{os.getpid()}_{name.replace('-', '_')}"
            self._pg(f"DROP DATABASE IF EXISTS {database}")
            self._pg(f"CREATE DATABASE {database} TEMPLATE {self.template_db}")
            self.databases.append(database)
            import redis

            redis.Redis.from_url(self.topology.redis_url).flushdb()
        return data_dir, database

    def cleanup(self) -> None:
        for database in reversed(self.databases):
            with contextlib.suppress(Exception):
                self._pg(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        if self.keep:
            print(f"kept data dirs in {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ server


class Server:
    """One server process of `kind` serving `app` (the product's ASGI application, or the yardstick's bare one)."""

    def __init__(self, kind: str, port: int, env: dict[str, str], log_path: Path, app: str = PRODUCT_APP) -> None:
        self.kind = kind
        self.port = port
        if kind == "daphne":
            # As `make run` serves it; backlog=4096 because daphne's default of 50 drops SYNs in a storm.
            cmd = [
                str(BIN / "daphne"),
                "-v0",  # no access log line per websocket (uvicorn: --no-access-log)
                "-e",
                f"tcp:port={port}:interface=127.0.0.1:backlog=4096",
                app,
            ]
        elif kind == "uvicorn":
            cmd = [
                str(BIN / "uvicorn"),
                app,
                "--host=127.0.0.1",
                f"--port={port}",
                "--loop=uvloop",
                "--http=httptools",
                "--backlog=4096",
                "--no-access-log",
                "--log-level=warning",
                "--lifespan=off",
            ]
        else:
            raise ValueError(kind)
        self.log = open(log_path, "wb")
        # prlimit: the server gets the hard fd limit like the clients (Popen's preexec runs in the child).
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=raise_fd_limit,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}; see {self.log.name}")
            try:
                status = await asyncio.to_thread(http_request, self.port, "GET", "/client/v4/user/tokens/verify")
                if status[0]:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.kind} did not answer within {timeout:.0f} s")

    def cpu(self) -> float:
        return proc_cpu_seconds(self.pid)

    def rss(self) -> float:
        return rss_mb(self.pid)

    def peak_rss(self) -> float:
        return proc_status_kb(self.pid, "VmHWM") / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def http_request(port: int, method: str, path: str, body: Any = None, token: str = "") -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data[:200]
    finally:
        conn.close()
