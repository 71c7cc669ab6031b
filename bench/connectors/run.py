"""Connector fleet benchmark: N protocol-level connectors against one server process (daphne and uvicorn).

For each (server, N): a fresh data dir (SQLite, embedded mode; or PostgreSQL + Redis with --production), one
server process, a status-page watcher, then

1. reconnect storm: all N connectors dial at once; time until the last one received WELCOME;
2. server RSS (VmRSS) after the storm, and its CPU (utime + stime) over an idle window with heartbeats;
3. at N <= 1,000 (or --latency): config push, from the API PUT to the last connector acking the new version,
   and status page latency, from a probe connector's HELLO (or close) to the watcher seeing it.

The connectors run in 1-2 separate processes (bench/connectors/fleet.py). docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import ROOT, server_env
from bench.connectors.fleet import raise_fd_limit
from connector import protocol
from connector.websocket import ConnectionClosed, WebSocket, connect

BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVERS = ("daphne", "uvicorn")


# ------------------------------------------------------------------------------------------------ /proc


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    return proc_status_kb(pid, "VmRSS") / 1024


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------ data dirs


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
    def __init__(self, kind: str, port: int, env: dict[str, str], log_path: Path) -> None:
        self.kind = kind
        self.port = port
        if kind == "daphne":
            # As `make run` serves it; backlog=4096 because daphne's default of 50 drops SYNs in a storm.
            cmd = [
                str(BIN / "daphne"),
                "-v0",  # no access log line per websocket (uvicorn: --no-access-log)
                "-e",
                f"tcp:port={port}:interface=127.0.0.1:backlog=4096",
                "controlplane.asgi:application",
            ]
        elif kind == "uvicorn":
            cmd = [
                str(BIN / "uvicorn"),
                "controlplane.asgi:application",
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


# ------------------------------------------------------------------------------------------------ clients


class FleetWorker:
    """One fleet process (bench/connectors/fleet.py), spoken to in JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._tags = iter(range(1, 1 << 30))
        self._waiting: dict[Any, asyncio.Future] = {}
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls) -> FleetWorker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.connectors.fleet",
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            answer = json.loads(line)
            future = self._waiting.pop(answer.pop("tag"), None)
            if future is not None and not future.done():
                future.set_result(answer)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(RuntimeError("fleet process exited"))

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        tag = next(self._tags)
        future = asyncio.get_running_loop().create_future()
        self._waiting[tag] = future
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, "tag": tag, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        return await future

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write(b'{"cmd": "stop"}\n')
            await self.proc.stdin.drain()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()

    def cpu(self) -> float:
        return proc_cpu_seconds(self.proc.pid)


class StatusWatcher:
    """A browser's status page socket: session cookie + Origin, as the page opens it."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.snapshot: dict[str, Any] | None = None
        self._predicates: list[tuple[Any, asyncio.Future]] = []
        self._task = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, port: int, account_id: str, cookie: str) -> StatusWatcher:
        ws = await connect(
            f"ws://127.0.0.1:{port}/ws/accounts/{account_id}/tunnels/status",
            headers=[("Cookie", cookie), ("Origin", f"http://127.0.0.1:{port}")],
            max_message_size=64 * 1024 * 1024,
        )
        watcher = cls(ws)
        watcher.snapshot = await watcher.wait(lambda m: m.get("type") == "snapshot", 60)
        return watcher

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                text = await self.ws.recv()
                received = time.monotonic()
                message = json.loads(text)
                for predicate, future in list(self._predicates):
                    if not future.done() and predicate(message):
                        future.set_result((received, message))

    async def wait(self, predicate: Any, timeout: float) -> Any:
        future = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._predicates.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._predicates.remove(entry)

    def expect(self, predicate: Any) -> asyncio.Future:
        """Start watching for a message now (before the action), collect it later with `collect`."""
        future = asyncio.get_running_loop().create_future()
        self._predicates.append((predicate, future))
        return future

    async def collect(self, future: asyncio.Future, timeout: float) -> tuple[float, Any] | None:
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return None
        finally:
            self._predicates[:] = [(p, f) for p, f in self._predicates if f is not future]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(timeout=2)
        self._task.cancel()


class PingProbe:
    """One more connector that PINGs every 100 ms during the idle window: how long the server's event loop makes
    a heartbeat wait (the fleet's own round trips also include the fleet process's queueing)."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.rtts: list[float] = []
        self._sent: dict[int, float] = {}
        self._tasks = [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._ping())]

    @classmethod
    async def open(cls, port: int, token: str) -> PingProbe:
        ws = await connect(
            f"ws://127.0.0.1:{port}{protocol.WEBSOCKET_PATH}",
            headers=[("Authorization", f"Bearer {token}")],
            max_message_size=protocol.MAX_FRAME_SIZE,
        )
        await ws.send(protocol.encode(protocol.Hello(connector_id=str(uuid.uuid4()), version="bench-probe")))
        return cls(ws)

    async def _ping(self) -> None:
        for nonce in range(1, 1 << 30):
            self._sent[nonce] = time.monotonic()
            await self.ws.send(protocol.encode(protocol.Ping(nonce=nonce)))
            await asyncio.sleep(0.1)

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed, protocol.ProtocolError):
            while True:
                message = protocol.decode(await self.ws.recv())
                if isinstance(message, protocol.Pong) and message.nonce in self._sent:
                    self.rtts.append(time.monotonic() - self._sent.pop(message.nonce))
                elif isinstance(message, protocol.Ping):
                    await self.ws.send(protocol.encode(protocol.Pong(nonce=message.nonce, ts=message.ts)))

    async def close(self) -> list[float]:
        self._tasks[1].cancel()
        await asyncio.sleep(0.5)
        self._tasks[0].cancel()
        with contextlib.suppress(Exception):
            await self.ws.close(protocol.CloseCode.GOING_AWAY, timeout=2)
        # PINGs never answered count as the whole window (a lost PONG is a bad round trip, not a missing one).
        return self.rtts + [time.monotonic() - sent for sent in self._sent.values()]


def connector_listed(tunnel_id: str, connector_id: str, present: bool):
    def predicate(message: dict[str, Any]) -> bool:
        tunnel = message.get("tunnel") or {}
        if message.get("type") != "tunnel" or tunnel.get("id") != tunnel_id:
            return False
        listed = any(str(c.get("id")) == connector_id for c in tunnel.get("connectors", []))
        return listed == present

    return predicate


# ------------------------------------------------------------------------------------------------ scenario


@dataclasses.dataclass
class Result:
    server: str
    n: int
    connected: int = 0
    connect_all: float | None = None
    connect_median: float | None = None
    dial_attempts: int = 0
    rss_boot: float = 0.0
    rss: float = 0.0
    rss_peak: float = 0.0
    storm_cpu: float | None = None
    client_storm_cpu: float | None = None
    idle_cpu: float | None = None
    client_idle_cpu: float | None = None
    idle_live: int = 0
    redials: int = 0
    hb_rtt_p99: float | None = None
    probe_rtts: list[float] = dataclasses.field(default_factory=list)
    config: list[float] = dataclasses.field(default_factory=list)
    config_put: list[float] = dataclasses.field(default_factory=list)
    config_missing: int = 0
    status_connect: list[float] = dataclasses.field(default_factory=list)
    status_disconnect: list[float] = dataclasses.field(default_factory=list)
    status_missing: int = 0
    error: str = ""


async def run_scenario(kind: str, n: int, args: argparse.Namespace, dirs: DataDirs) -> Result:
    result = Result(kind, n)
    name = f"{kind}-{n}"
    data_dir, database = dirs.scenario(name)
    port = free_port()
    env = dirs.topology.env(data_dir, database, port)
    gc_log = data_dir / "gc.log"
    if args.gc_log:
        env["PYTHONPATH"] = f"{Path(__file__).parent / 'gclog'}{os.pathsep}{env['PYTHONPATH']}"
        env["BENCH_GC_LOG"] = str(gc_log)
    tunnels = args.tunnels or 1
    seed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.connectors.seed",
            f"--tunnels={tunnels}",
            f"--public-url=http://127.0.0.1:{port}",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    creds = json.loads(seed.stdout.strip().splitlines()[-1])
    tokens = [t["token"] for t in creds["tunnels"]]
    fleet_tunnel = creds["tunnels"][0]["id"]
    workers_count = args.workers or (1 if n <= 2000 else 2)
    workers = [await FleetWorker.start() for _ in range(workers_count)]
    server = Server(kind, port, env, data_dir / "server.log")
    profilers: list[subprocess.Popen] = []
    watcher: StatusWatcher | None = None
    try:
        await server.wait_ready()
        if args.watch_storm:
            watcher = await StatusWatcher.open(port, creds["account_id"], creds["session_cookie"])
        else:  # start the hub (it starts with the first websocket) without a status page open
            await (await PingProbe.open(port, creds["tunnels"][0]["token"])).close()
        await asyncio.sleep(1.0)
        result.rss_boot = server.rss()
        log(f"{name}: server pid {server.pid} ready, RSS {result.rss_boot:.0f} MB; storm of {n} connections")

        # 1. Reconnect storm.
        if args.profile:
            profilers.append(py_spy(server.pid, Path(args.profile) / f"{name}-storm.txt"))
        start = time.monotonic() + 1.0
        cpu_before = server.cpu()
        client_cpu_before = sum(w.cpu() for w in workers)
        bounds = [n * i // workers_count for i in range(workers_count + 1)]
        storms = await asyncio.gather(
            *(
                w.call(
                    "storm",
                    url=f"ws://127.0.0.1:{port}{protocol.WEBSOCKET_PATH}",
                    tokens=tokens,
                    ha=args.ha,
                    lo=bounds[i],
                    hi=bounds[i + 1],
                    start=start,
                    timeout=args.storm_timeout,
                    run=name,
                )
                for i, w in enumerate(workers)
            )
        )
        result.storm_cpu = server.cpu() - cpu_before
        result.client_storm_cpu = sum(w.cpu() for w in workers) - client_cpu_before
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)
        result.connected = sum(s["welcomed"] for s in storms)
        result.dial_attempts = sum(s["attempts"] for s in storms)
        errors: dict[str, int] = {}
        for s in storms:
            for reason, count in s["dial_errors"].items():
                errors[reason] = errors.get(reason, 0) + count
        if errors:
            log(f"{name}: failed dials (retried with the connector's backoff): {errors}")
        lasts = [s["last_welcome"] for s in storms if s["last_welcome"]]
        if lasts:
            result.connect_all = max(lasts) - start
            result.connect_median = max(s["median_welcome"] for s in storms) - start
        result.rss = server.rss()
        log(
            f"{name}: {result.connected}/{n} welcomed, last after {fmt_s(result.connect_all)}, "
            f"{result.dial_attempts} dials, RSS {result.rss:.0f} MB"
        )
        if result.connected < n:
            result.error = f"only {result.connected}/{n} connected within {args.storm_timeout:.0f} s"

        # 2. Idle with heartbeats (connector PINGs every interval, the server's sweeper PINGs every interval).
        probe = await PingProbe.open(port, creds["tunnels"][0]["token"])  # before settling: it changes the status
        await asyncio.sleep(args.settle)
        for w in workers:
            await w.call("stats")  # resets the round-trip samples
        if args.profile:
            profilers.append(py_spy(server.pid, Path(args.profile) / f"{name}-idle.txt", duration=int(args.idle)))
        probe.rtts.clear()
        cpu_before, client_cpu_before, t0 = server.cpu(), sum(w.cpu() for w in workers), time.monotonic()
        await asyncio.sleep(args.idle)
        elapsed = time.monotonic() - t0
        result.probe_rtts = await probe.close()
        if args.gc_log:
            pauses = full_collections(gc_log, t0, t0 + elapsed)
            log(
                f"{name}: {len(pauses)} full garbage collections in the idle window, "
                f"{sum(pauses):.2f} s in all, longest {fmt_ms(max(pauses, default=None))}"
            )
        result.idle_cpu = 100 * (server.cpu() - cpu_before) / elapsed
        result.client_idle_cpu = 100 * (sum(w.cpu() for w in workers) - client_cpu_before) / elapsed
        stats = [await w.call("stats") for w in workers]
        result.idle_live = sum(s["live"] for s in stats)
        result.redials = sum(s["redials"] for s in stats)
        rtts = [s["rtt_p99"] for s in stats if s["rtt_p99"] is not None]
        result.hb_rtt_p99 = max(rtts) if rtts else None
        result.rss = max(result.rss, server.rss())
        log(
            f"{name}: idle {result.idle_cpu:.1f} % of a core over {elapsed:.0f} s, {result.idle_live} live, "
            f"probe PING RTT p50 {fmt_ms(percentile(result.probe_rtts, 50))} p99 "
            f"{fmt_ms(percentile(result.probe_rtts, 99))} max {fmt_ms(max(result.probe_rtts, default=None))}, "
            f"fleet heartbeat RTT p99 {fmt_ms(result.hb_rtt_p99)}, RSS {server.rss():.0f} MB"
        )

        # 3. Latencies.
        if args.latency or n <= 1000:
            if watcher is None:
                watcher = await StatusWatcher.open(port, creds["account_id"], creds["session_cookie"])
            if args.profile:
                profilers.append(py_spy(server.pid, Path(args.profile) / f"{name}-latency.txt"))
            await config_rounds(result, args, port, creds, fleet_tunnel, workers)
            await status_rounds(result, args, port, creds, fleet_tunnel, watcher)
            for profiler in profilers:
                profiler.send_signal(signal.SIGINT)
        result.rss_peak = server.peak_rss()
    except Exception as exc:  # report the scenario as failed, keep going with the others
        result.error = result.error or f"{type(exc).__name__}: {exc}"
        log(f"{name}: FAILED: {result.error}")
    finally:
        for profiler in profilers:
            with contextlib.suppress(Exception):
                profiler.wait(30)
        if watcher is not None:
            await watcher.close()
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
        server.stop()
        if server.proc.returncode not in (0, -signal.SIGTERM, None):
            log(f"{name}: server exited with {server.proc.returncode}; log: {server.log.name}")
    return result


async def config_rounds(result: Result, args, port: int, creds: dict, tunnel_id: str, workers) -> None:
    path = f"/client/v4/accounts/{creds['account_id']}/cfd_tunnel/{tunnel_id}/configurations"
    for number in range(args.rounds):
        config = {"ingress": [{"service": "http_status:404"}], "originRequest": {"connectTimeout": 10 + number}}
        t0 = time.monotonic()
        status, body = await asyncio.to_thread(http_request, port, "PUT", path, {"config": config}, creds["api_token"])
        put_done = time.monotonic()
        if status != 200:
            raise RuntimeError(f"config PUT answered {status}: {body}")
        version = body["result"]["version"]
        answers = await asyncio.gather(
            *(w.call("config", tunnel=0, version=version, timeout=args.latency_timeout) for w in workers)
        )
        missing = sum(a["expected"] - a["acked"] for a in answers)
        result.config_missing += missing
        lasts = [a["last"] for a in answers if a["last"] is not None]
        if lasts and not missing:
            result.config.append(max(lasts) - t0)
            result.config_put.append(put_done - t0)
            if args.verbose:
                first = min(a["first"] for a in answers if a["first"] is not None)
                log(
                    f"  config v{version}: PUT answered {fmt_ms(put_done - t0)}, first CONFIG {fmt_ms(first - t0)}, "
                    f"last {fmt_ms(max(lasts) - t0)}"
                )
        await asyncio.sleep(args.pause)
    log(
        f"{result.server}-{result.n}: config push to all p50 {fmt_ms(percentile(result.config, 50))} "
        f"p99 {fmt_ms(percentile(result.config, 99))} (PUT alone p50 {fmt_ms(percentile(result.config_put, 50))}), "
        f"{result.config_missing} acks missing"
    )


async def status_rounds(result: Result, args, port: int, creds: dict, tunnel_id: str, watcher) -> None:
    token = creds["tunnels"][0]["token"]
    url = f"ws://127.0.0.1:{port}{protocol.WEBSOCKET_PATH}"
    for _ in range(args.rounds):
        connector_id = str(uuid.uuid4())
        ws = await connect(
            url, headers=[("Authorization", f"Bearer {token}")], max_message_size=protocol.MAX_FRAME_SIZE
        )
        seen = watcher.expect(connector_listed(tunnel_id, connector_id, True))
        t0 = time.monotonic()
        await ws.send(protocol.encode(protocol.Hello(connector_id=connector_id, version="bench-probe")))
        answer = await watcher.collect(seen, args.latency_timeout)
        if answer is None:
            result.status_missing += 1
        else:
            result.status_connect.append(answer[0] - t0)
        reader = asyncio.ensure_future(drain(ws))
        await asyncio.sleep(args.pause)
        gone = watcher.expect(connector_listed(tunnel_id, connector_id, False))
        t0 = time.monotonic()
        await ws.close(protocol.CloseCode.GOING_AWAY, "probe done")
        answer = await watcher.collect(gone, args.latency_timeout)
        if answer is None:
            result.status_missing += 1
        else:
            result.status_disconnect.append(answer[0] - t0)
        reader.cancel()
        await asyncio.sleep(args.pause)
    both = result.status_connect + result.status_disconnect
    log(
        f"{result.server}-{result.n}: status page p50 {fmt_ms(percentile(both, 50))} "
        f"p99 {fmt_ms(percentile(both, 99))} (connect p99 {fmt_ms(percentile(result.status_connect, 99))}, "
        f"disconnect p99 {fmt_ms(percentile(result.status_disconnect, 99))}), {result.status_missing} missed"
    )


async def drain(ws: WebSocket) -> None:
    """Answer the probe's PINGs while it is open (the probe sends none of its own: it lives < 1 s)."""
    with contextlib.suppress(ConnectionClosed, protocol.ProtocolError):
        while True:
            message = protocol.decode(await ws.recv())
            if isinstance(message, protocol.Ping):
                await ws.send(protocol.encode(protocol.Pong(nonce=message.nonce, ts=message.ts)))


def full_collections(path: Path, start: float, end: float) -> list[float]:
    """Pauses of the server's full collections between two monotonic times (bench/connectors/gclog)."""
    if not path.exists():
        return []
    pauses = []
    for line in path.read_text().splitlines():
        at, pause, _ = line.split()
        if start <= float(at) <= end:
            pauses.append(float(pause))
    return pauses


def py_spy(pid: int, output: Path, duration: int | None = None) -> subprocess.Popen:
    output.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--output", str(output), "--rate", "100", "--nonblocking"]
    cmd += ["--format", "raw" if output.suffix == ".txt" else "flamegraph"]
    if duration:
        cmd += ["--duration", str(duration)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ------------------------------------------------------------------------------------------------ report


def fmt_s(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.0f} ms"


def fmt_pair(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{percentile(values, 50) * 1000:.0f} / {percentile(values, 99) * 1000:.0f}"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def table(results: list[Result], args: argparse.Namespace) -> str:
    headers = [
        "server",
        "N",
        "connect all",
        "dials",
        "RSS (MB)",
        "idle CPU",
        "PING RTT p99",
        "config→all acked p50/p99 (ms)",
        "status page p50/p99 (ms)",
        "clients CPU storm/idle",
    ]
    rows = []
    for r in results:
        status = r.status_connect + r.status_disconnect
        rows.append(
            [
                r.server,
                f"{r.n:,}",
                (
                    fmt_s(r.connect_all)
                    if r.connected == r.n
                    else f"{r.connected:,}/{r.n:,} in {args.storm_timeout:.0f} s"
                ),
                f"{r.dial_attempts:,}",
                f"{r.rss:.0f}",
                "—" if r.idle_cpu is None else f"{r.idle_cpu:.1f} %",
                fmt_ms(percentile(r.probe_rtts, 99)),
                fmt_pair(r.config) + (f" ({r.config_missing} missing)" if r.config_missing else ""),
                fmt_pair(status) + (f" ({r.status_missing} missed)" if r.status_missing else ""),
                f"{r.client_storm_cpu or 0:.1f} s / {r.client_idle_cpu or 0:.1f} %",
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    errors = [f"{r.server} N={r.n}: {r.error}" for r in results if r.error]
    return "\n".join(lines + (["", "errors:", *errors] if errors else []))


def targets(results: list[Result]) -> list[str]:
    """The issue's targets, checked."""
    out = []
    for r in results:
        checks = []
        if r.n >= 10_000:
            checks += [
                ("connect all < 15 s", r.connect_all is not None and r.connected == r.n and r.connect_all < 15),
                ("idle CPU < 20 %", r.idle_cpu is not None and r.idle_cpu < 20),
                ("RSS < 400 MB", 0 < r.rss < 400),
            ]
        if r.config or r.status_connect:
            status = r.status_connect + r.status_disconnect
            checks += [
                ("config p99 < 250 ms", bool(r.config) and not r.config_missing and percentile(r.config, 99) < 0.25),
                ("status p99 < 250 ms", bool(status) and not r.status_missing and percentile(status, 99) < 0.25),
            ]
        if checks:
            out.append(
                f"{r.server} N={r.n:,}: " + ", ".join(f"{name} {'ok' if ok else 'MISSED'}" for name, ok in checks)
            )
    return out


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.connectors", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, action="append", help="connections (repeatable; default 1000 and 10000)")
    parser.add_argument("--server", choices=SERVERS, action="append", help="server (repeatable; default both)")
    parser.add_argument("--quick", action="store_true", help="N=1,000 only, 10 s idle, 10 latency rounds")
    parser.add_argument("--production", action="store_true", help="PostgreSQL + Redis instead of SQLite embedded")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/12", help="a dedicated database number: it is flushed"
    )
    parser.add_argument("--tunnels", type=int, default=1, help="spread the connectors over this many tunnels")
    parser.add_argument("--ha", type=int, default=4, help="connections per connector (cloudflared holds 4)")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds between the storm and the idle window")
    parser.add_argument("--rounds", type=int, default=20, help="config pushes, and status connects+disconnects")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between latency rounds")
    parser.add_argument("--latency", action="store_true", help="latency rounds at every N (default: N <= 1,000)")
    parser.add_argument(
        "--no-watch-storm",
        dest="watch_storm",
        action="store_false",
        help="no status page open during the storm (by default one is: every flush then recomputes its status)",
    )
    parser.add_argument("--storm-timeout", type=float, default=120.0)
    parser.add_argument("--latency-timeout", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=0, help="connector processes (default 1, 2 above 2,000)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy flame graphs of the storm and the idle window")
    parser.add_argument("--gc-log", action="store_true", help="log the server's full garbage collections")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every latency round")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and server logs")
    args = parser.parse_args(argv)
    if args.quick:
        args.idle = min(args.idle, 10.0)
        args.rounds = min(args.rounds, 10)
    args.n = args.n or ([1000] if args.quick else [1000, 10_000])
    args.server = args.server or list(SERVERS)
    return args


async def amain(args: argparse.Namespace) -> list[Result]:
    topology = Topology(args.production, args.postgres_url, args.redis_url)
    dirs = DataDirs(topology, args.keep)
    results = []
    try:
        log(f"migrating a template data dir ({'PostgreSQL + Redis' if args.production else 'SQLite, embedded'})")
        await asyncio.to_thread(dirs.prepare)
        for n in args.n:
            for kind in args.server:
                results.append(await run_scenario(kind, n, args, dirs))
    finally:
        dirs.cleanup()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    started = time.monotonic()
    results = asyncio.run(amain(args))
    mode = "PostgreSQL + Redis (production)" if args.production else "SQLite (embedded)"
    print()
    print(
        f"Connector fleet benchmark: one server process, {mode}, {args.tunnels} tunnel(s), {args.ha} connections "
        f"per connector, heartbeat 10 s, idle window {args.idle:.0f} s, {args.rounds} latency rounds; "
        f"{os.cpu_count()} CPUs; {time.monotonic() - started:.0f} s in all"
    )
    print(table(results, args))
    print()
    for line in targets(results):
        print(line)
    return 1 if any(r.error for r in results) else 0
