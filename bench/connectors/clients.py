"""The benchmark's clients: the fleet processes (bench/connectors/fleet.py) spoken to over pipes, a browser's
status page socket, and a probe connector that measures the server's PING round trips."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from typing import Any

from bench.common import ROOT
from bench.connectors.procs import proc_cpu_seconds
from connector import protocol
from connector.websocket import ConnectionClosed, WebSocket, connect


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


async def drain(ws: WebSocket) -> None:
    """Answer the probe's PINGs while it is open (the probe sends none of its own: it lives < 1 s)."""
    with contextlib.suppress(ConnectionClosed, protocol.ProtocolError):
        while True:
            message = protocol.decode(await ws.recv())
            if isinstance(message, protocol.Ping):
                await ws.send(protocol.encode(protocol.Pong(nonce=message.nonce, ts=message.ts)))
