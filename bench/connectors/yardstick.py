"""The same-run yardstick: a bare per-socket fan-out on this machine, now.

A second server process of the same kind and flags as the product's (daphne or uvicorn, one process) serves `app`
below: a bare ASGI application with no Django, no database and no configuration building. An equal set of N
connector sockets (the same fleet code, in its own fleet processes) dials it and says HELLO; `POST /fanout?version=V`
then sends one small pre-encoded CONFIG frame to every socket, one `send` each, and every socket acks it as it
acks the product's (bench/connectors/fleet.py). A round is timed as the product's config push is: from the
request to the last socket receiving the frame (and acking). Its p50/p99 is the floor under the product's
"config -> all acked" on this machine at this minute; the product's figures are also reported as ratios to its p99,
so a slow or loaded machine reads as a ratio, not a failure (docs/benchmarks.md, "Connectors").
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from bench.common import ROOT
from bench.connectors.clients import FleetWorker
from bench.connectors.procs import free_port
from bench.connectors.servers import Server, http_request
from connector import protocol

# The bare server's state (one process, one event loop): the open sockets' ASGI send callables, acks per version.
_sockets: dict[int, Any] = {}
_acks: dict[int, int] = {}
_server_id = f"yardstick-{uuid.uuid4().hex[:6]}"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await _socket(receive, send)
    elif scope["type"] == "http":
        await _http(scope, receive, send)
    elif scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


async def _socket(receive: Any, send: Any) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    key = id(send)
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            data = event.get("bytes")
            if not data:
                continue
            for message in protocol.decode_many(data):
                if isinstance(message, protocol.Hello):
                    welcome = protocol.Welcome(connection_id=str(uuid.uuid4()), server_id=_server_id)
                    await send({"type": "websocket.send", "bytes": protocol.encode(welcome)})
                    _sockets[key] = send
                elif isinstance(message, protocol.Ping):
                    pong = protocol.Pong(nonce=message.nonce, ts=message.ts)
                    await send({"type": "websocket.send", "bytes": protocol.encode(pong)})
                elif isinstance(message, protocol.ConfigAck):
                    _acks[message.version] = _acks.get(message.version, 0) + 1
    finally:
        _sockets.pop(key, None)


async def _http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    query = parse_qs(scope.get("query_string", b"").decode())
    version = int(query.get("version", ["0"])[0] or 0)
    if scope["path"] == "/fanout" and scope["method"] == "POST":
        frame = protocol.encode(protocol.Config(version=version, config={"ingress": [{"service": "http_status:404"}]}))
        message = {"type": "websocket.send", "bytes": frame}
        sent = 0
        for socket_send in list(_sockets.values()):
            try:
                await socket_send(message)
                sent += 1
            except Exception:  # a socket that went away meanwhile
                pass
        body = b'{"sent": %d}' % sent
    elif scope["path"] == "/acks":
        body = b'{"acked": %d, "sockets": %d}' % (_acks.get(version, 0), len(_sockets))
    else:
        body = b'{"yardstick": true}'
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def yardstick_env() -> dict[str, str]:
    """The bare server's environment: the caller's, with the project importable (no Django settings needed)."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


class Yardstick:
    """The bare server and its own fleet of N sockets, beside the product's scenario (same server kind, same
    number of fleet processes); `round()` times one fan-out."""

    def __init__(self, kind: str, n: int, ha: int, workers: int, log_dir: Path, env: dict[str, str]) -> None:
        self.kind, self.n, self.ha, self.workers_count = kind, n, ha, workers
        self.port = free_port()
        self.server = Server(kind, self.port, env, log_dir / "yardstick.log", app="bench.connectors.yardstick:app")
        self.workers: list[FleetWorker] = []
        self.version = 0
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.client_cpu: list[float] = []  # the fleet processes' CPU per round (receiving, decoding, acking)
        self.missing = 0

    async def start(self, timeout: float) -> int:
        """Serve, and dial the N sockets; returns how many were welcomed."""
        await self.server.wait_ready()
        self.workers = [await FleetWorker.start() for _ in range(self.workers_count)]
        bounds = [self.n * i // self.workers_count for i in range(self.workers_count + 1)]
        start = time.monotonic() + 0.5
        storms = await asyncio.gather(
            *(
                w.call(
                    "storm",
                    url=f"ws://127.0.0.1:{self.port}{protocol.WEBSOCKET_PATH}",
                    tokens=["yardstick"],
                    ha=self.ha,
                    lo=bounds[i],
                    hi=bounds[i + 1],
                    start=start,
                    timeout=timeout,
                    run="yardstick",
                )
                for i, w in enumerate(self.workers)
            )
        )
        return sum(s["welcomed"] for s in storms)

    async def round(self, timeout: float) -> float | None:
        """One bare fan-out: from the request to the last socket receiving the frame (and acking it)."""
        self.version += 1
        cpu_before = self.server.cpu()
        client_before = sum(w.cpu() for w in self.workers)
        t0 = time.monotonic()
        status, _ = await asyncio.to_thread(http_request, self.port, "POST", f"/fanout?version={self.version}")
        if status != 200:
            raise RuntimeError(f"yardstick fan-out answered {status}")
        answers = await asyncio.gather(
            *(w.call("config", tunnel=0, version=self.version, timeout=timeout) for w in self.workers)
        )
        missing = sum(a["expected"] - a["acked"] for a in answers)
        self.missing += missing
        lasts = [a["last"] for a in answers if a["last"] is not None]
        await asyncio.sleep(0.02)  # the acks reach the server
        self.cpu.append(self.server.cpu() - cpu_before)
        self.client_cpu.append(sum(w.cpu() for w in self.workers) - client_before)
        if missing or not lasts:
            return None
        self.times.append(max(lasts) - t0)
        return self.times[-1]

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
        self.server.stop()
