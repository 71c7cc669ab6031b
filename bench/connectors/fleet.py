"""A fleet of simulated connectors in one process, driven by the orchestrator over stdin/stdout (JSON lines).

Each simulated connection behaves like the real connector (connector/supervisor.py) at the protocol level, with
the connector's own websocket client and connector.protocol framing: dial, HELLO, wait for WELCOME, then PING every
heartbeat interval, answer the server's PINGs, ack every CONFIG at once. A failed dial is retried with the
connector's full-jitter backoff, so a reconnect storm here looks like a real one.

Commands (one JSON object per line on stdin; one JSON answer per line on stdout):

* ``storm``: ``{"url", "tokens": [...], "ha", "lo", "hi", "start", "timeout", "run"}``: connections lo..hi-1 all
  dial at monotonic time ``start``; connection i is index i % ha of connector i // ha, on tunnel
  (i // ha) % len(tokens). Answers once every connection was welcomed or ``timeout`` passed.
* ``config``: ``{"version", "tunnel", "timeout"}``: waits until every connection of that tunnel acked the version.
* ``stats``: connection counts, heartbeat round trips, this process's CPU time.
* ``stop``: close every connection and exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import sys
import time
import uuid
from typing import Any

from connector import protocol
from connector.supervisor import backoff_delay
from connector.websocket import ConnectionClosed, WebSocket, WebSocketError, connect

BENCH_NAMESPACE = uuid.UUID("6a1d6b8e-3f0c-4d8e-9a57-1b2c3d4e5f60")


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connector_uuid(run: str, number: int) -> str:
    return str(uuid.uuid5(BENCH_NAMESPACE, f"{run}/{number}"))


class SimConnection:
    __slots__ = (
        "fleet",
        "number",
        "tunnel",
        "token",
        "connector_id",
        "index",
        "ha",
        "ws",
        "welcomed_at",
        "attempts",
        "interval",
        "next_ping",
        "pings",
        "config_version",
        "acked",
        "closed_by_server",
    )

    def __init__(self, fleet: Fleet, number: int, tunnel: int, token: str, connector_id: str, index: int, ha: int):
        self.fleet = fleet
        self.number = number
        self.tunnel = tunnel
        self.token = token
        self.connector_id = connector_id
        self.index = index
        self.ha = ha
        self.ws: WebSocket | None = None
        self.welcomed_at = 0.0
        self.attempts = 0
        self.interval = protocol.DEFAULT_HEARTBEAT_INTERVAL
        self.next_ping = 0.0
        self.pings: dict[int, float] = {}
        self.config_version = -1
        self.acked: dict[int, float] = {}
        self.closed_by_server = 0

    async def run(self, url: str, open_timeout: float) -> None:
        """Dial until welcomed (the storm), then serve the connection; redial if the server drops it."""
        attempt = 0
        while not self.fleet.stopping:
            self.attempts += 1
            try:
                ws = await connect(
                    url,
                    headers=[("Authorization", f"Bearer {self.token}"), ("User-Agent", "zt-bench/1")],
                    max_message_size=protocol.MAX_FRAME_SIZE,
                    open_timeout=open_timeout,
                )
            except (WebSocketError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc}"[:60]
                self.fleet.dial_errors[reason] = self.fleet.dial_errors.get(reason, 0) + 1
                await asyncio.sleep(backoff_delay(attempt, 1.0, 60.0))
                attempt += 1
                continue
            self.ws = ws
            try:
                await ws.send(
                    protocol.encode(
                        protocol.Hello(
                            connector_id=self.connector_id,
                            version="bench",
                            conn_index=self.index,
                            ha_connections=self.ha,
                            arch="linux_amd64",
                            platform="bench",
                            hostname=f"bench-{self.number // self.ha}",
                            config_version=self.config_version,
                        )
                    )
                )
                welcome = protocol.decode(await ws.recv())
                if not isinstance(welcome, protocol.Welcome):
                    raise protocol.ProtocolError(f"expected WELCOME, got {welcome.KIND.name}")
                now = time.monotonic()
                if not self.welcomed_at:
                    self.welcomed_at = now
                    self.fleet.welcomed(self)
                attempt = 0
                self.interval = welcome.heartbeat_interval
                self.next_ping = now + self.interval
                self.fleet.live.add(self)
                while True:
                    await self.dispatch(protocol.decode(await ws.recv()))
            except (ConnectionClosed, WebSocketError, OSError, protocol.ProtocolError):
                pass
            finally:
                self.fleet.live.discard(self)
                self.ws = None
                ws.abort()
            if self.fleet.stopping:
                return
            self.closed_by_server += 1
            await asyncio.sleep(backoff_delay(attempt, 1.0, 60.0))
            attempt += 1

    async def dispatch(self, message: Any) -> None:
        ws = self.ws
        assert ws is not None
        if isinstance(message, protocol.Config):
            received = time.monotonic()
            self.config_version = max(self.config_version, message.version)
            ack = protocol.ConfigAck(version=message.version, applied=True, running_version=self.config_version)
            await ws.send(protocol.encode(ack))
            self.acked[message.version] = received
            self.fleet.config_acked(self, message.version)
        elif isinstance(message, protocol.Ping):
            await ws.send(protocol.encode(protocol.Pong(nonce=message.nonce, ts=message.ts)))
        elif isinstance(message, protocol.Pong):
            sent = self.pings.pop(message.nonce, None)
            if sent is not None:
                self.fleet.rtts.append(time.monotonic() - sent)

    async def ping(self, nonce: int) -> None:
        ws = self.ws
        if ws is None:
            return
        self.pings[nonce] = time.monotonic()
        if len(self.pings) > 8:
            del self.pings[min(self.pings)]
        try:
            await ws.send(protocol.encode(protocol.Ping(nonce=nonce, ts=time.time())))
        except (ConnectionClosed, OSError):
            pass


class Fleet:
    def __init__(self) -> None:
        self.connections: list[SimConnection] = []
        self.live: set[SimConnection] = set()
        self.tasks: list[asyncio.Task] = []
        self.stopping = False
        self.rtts: list[float] = []
        self._welcomed = 0
        self._all_welcomed = asyncio.Event()
        self._acks: dict[tuple[int, int], int] = {}
        self._ack_waiters: dict[tuple[int, int], asyncio.Event] = {}
        self._nonce = 0
        self._sizes: dict[int, int] = {}
        self.dial_errors: dict[str, int] = {}

    def welcomed(self, conn: SimConnection) -> None:
        self._welcomed += 1
        if self._welcomed == len(self.connections):
            self._all_welcomed.set()

    def config_acked(self, conn: SimConnection, version: int) -> None:
        key = (conn.tunnel, version)
        self._acks[key] = self._acks.get(key, 0) + 1
        waiter = self._ack_waiters.get(key)
        if waiter is not None and self._acks[key] >= self._tunnel_size(conn.tunnel):
            waiter.set()

    def _tunnel_size(self, tunnel: int) -> int:
        return self._sizes.get(tunnel, 0)

    async def heartbeats(self) -> None:
        """One ticker for the whole fleet (instead of a sleeping task per connection): each connection still
        pings every heartbeat interval after its WELCOME, as the connector does."""
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            for conn in list(self.live):
                if now >= conn.next_ping:
                    conn.next_ping = now + conn.interval
                    self._nonce += 1
                    await conn.ping(self._nonce)

    async def storm(self, cmd: dict[str, Any]) -> dict[str, Any]:
        tokens, ha, run = cmd["tokens"], cmd["ha"], cmd["run"]
        for number in range(cmd["lo"], cmd["hi"]):
            connector = number // ha
            tunnel = connector % len(tokens)
            self.connections.append(
                SimConnection(self, number, tunnel, tokens[tunnel], connector_uuid(run, connector), number % ha, ha)
            )
            self._sizes[tunnel] = self._sizes.get(tunnel, 0) + 1
        await asyncio.sleep(max(0.0, cmd["start"] - time.monotonic()))
        started = time.monotonic()
        cpu_before = time.process_time()
        for conn in self.connections:
            self.tasks.append(asyncio.ensure_future(conn.run(cmd["url"], cmd.get("open_timeout", 30.0))))
        self.tasks.append(asyncio.ensure_future(self.heartbeats()))
        try:
            await asyncio.wait_for(self._all_welcomed.wait(), cmd["timeout"])
        except TimeoutError:
            pass
        welcomed = sorted(c.welcomed_at for c in self.connections if c.welcomed_at)
        return {
            "started": started,
            "welcomed": len(welcomed),
            "total": len(self.connections),
            "last_welcome": welcomed[-1] if welcomed else None,
            "median_welcome": welcomed[len(welcomed) // 2] if welcomed else None,
            "attempts": sum(c.attempts for c in self.connections),
            "dial_errors": self.dial_errors,
            "cpu": time.process_time() - cpu_before,
            "wall": time.monotonic() - started,
        }

    async def wait_config(self, cmd: dict[str, Any]) -> dict[str, Any]:
        tunnel, version = cmd["tunnel"], cmd["version"]
        members = [c for c in self.connections if c.tunnel == tunnel]
        key = (tunnel, version)
        if self._acks.get(key, 0) < len(members):
            waiter = self._ack_waiters.setdefault(key, asyncio.Event())
            try:
                await asyncio.wait_for(waiter.wait(), cmd["timeout"])
            except TimeoutError:
                pass
        times = [c.acked[version] for c in members if version in c.acked]
        return {
            "acked": len(times),
            "expected": len(members),
            "first": min(times) if times else None,
            "last": max(times) if times else None,
        }

    def stats(self) -> dict[str, Any]:
        rtts = sorted(self.rtts)
        self.rtts = []
        return {
            "live": len(self.live),
            "total": len(self.connections),
            "redials": sum(c.closed_by_server for c in self.connections),
            "rtt_p50": rtts[len(rtts) // 2] if rtts else None,
            "rtt_p99": rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))] if rtts else None,
            "rtt_max": rtts[-1] if rtts else None,
            "cpu": time.process_time(),
        }

    async def stop(self) -> None:
        self.stopping = True
        for conn in list(self.live):
            if conn.ws is not None:
                conn.ws.abort()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def serve() -> None:
    fleet = Fleet()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pending: set[asyncio.Task] = set()

    def answer(tag: Any, result: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps({"tag": tag, **result}) + "\n")
        sys.stdout.flush()

    async def handle(cmd: dict[str, Any]) -> None:
        name = cmd["cmd"]
        if name == "storm":
            result = await fleet.storm(cmd)
        elif name == "config":
            result = await fleet.wait_config(cmd)
        elif name == "stats":
            result = fleet.stats()
        else:
            raise ValueError(f"unknown command {name}")
        answer(cmd.get("tag"), result)

    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "stop":
            break
        task = asyncio.ensure_future(handle(cmd))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await fleet.stop()
    answer("stop", {"stopped": True})


def main() -> None:
    raise_fd_limit()
    random.seed(os.getpid())
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve())
    else:
        uvloop.run(serve())


if __name__ == "__main__":
    main()
