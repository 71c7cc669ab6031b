"""Holds the connector's connections to the control plane: registration, configuration, heartbeats, reconnects
and the drained shutdown.

Each of the `ha_connections` slots runs its own loop: dial, HELLO, wait for WELCOME, then serve frames until the
connection ends, then back off (full jitter, base 1 s, cap 60 s, reset after a WELCOME) and dial again, forever.
The applied configuration is shared by the slots and survives reconnects; HELLO reports its version so the
server only resends what is newer.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import platform
import random
import socket
import ssl
import sys
import time
import urllib.parse
import uuid
from typing import Any, Callable

from . import __version__, protocol
from .dataplane import DataPlane, Mux
from .httpclient import env_extra_ca_file
from .protocol import CloseCode, ProtocolError
from .token import TunnelToken
from .websocket import ConnectionClosed, HandshakeError, WebSocket, WebSocketError, connect

log = logging.getLogger("connector")

_REQUEST = int(protocol.Kind.REQUEST)
FEATURES = ["remote-config", "ha-connections", protocol.FEATURE_STREAMS, protocol.FEATURE_BATCH]
# HTTP answers to the upgrade that mean the credentials, not the network, are the problem.
_REFUSAL_STATUSES = frozenset({401, 403, 404, 410})


def go_arch() -> str:
    """cloudflared's GOOS_GOARCH, e.g. "linux_amd64", so the control plane shows the same thing."""
    system = platform.system().lower() or sys.platform
    machine = platform.machine().lower()
    machine = {
        "x86_64": "amd64",
        "amd64": "amd64",
        "aarch64": "arm64",
        "arm64": "arm64",
        "i386": "386",
        "i686": "386",
        "armv7l": "arm",
        "armv6l": "arm",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
    }.get(machine, machine or "unknown")
    return f"{system}_{machine}"


def platform_description() -> str:
    return f"{platform.system()} {platform.release()}; Python {platform.python_version()}".strip()


def backoff_delay(
    attempt: int, base: float, cap: float, rng: Callable[[float, float], float] = random.uniform
) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng(0.0, min(cap, base * 2 ** min(attempt, 32)))


@dataclasses.dataclass
class Settings:
    url: str
    token: TunnelToken
    ha_connections: int = 2
    grace_period: float = 30.0
    ssl: ssl.SSLContext | None = None
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    open_timeout: float = 15.0
    welcome_timeout: float = 15.0
    # Extra CA bundle origins are verified against (besides the system roots and each rule's caPool): the hook for
    # the Origin CA bundle the control plane will provide. TUNNEL_ORIGIN_CA_FILE by default.
    origin_ca_file: str = dataclasses.field(default_factory=env_extra_ca_file)


def http_base(url: str) -> str:
    """The HTTP origin of the websocket URL the connector dials (ws→http, wss→https), without a path."""
    parts = urllib.parse.urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


@dataclasses.dataclass
class Stats:
    """Counters for /metrics."""

    started_at: float = dataclasses.field(default_factory=time.time)
    reconnects: int = 0
    protocol_errors: int = 0
    config_errors: int = 0
    frames_sent: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    frames_received: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    heartbeat_rtt: dict[int, float] = dataclasses.field(default_factory=dict)


def _compile_config(config: dict) -> Any:
    """Validate and compile a configuration into the ingress router (connector/ingress.py, imported lazily so that
    this module loads on its own). Raises IngressError (a ValueError) with cloudflared's words."""
    from .ingress import Ingress

    return Ingress.from_config(config)


class ConfigState:
    """The configuration the connector runs. cloudflared semantics: starts at version -1, ignores versions <= the
    current one, keeps the old configuration when a new one is invalid, swaps valid ones in atomically."""

    def __init__(self, stats: Stats) -> None:
        self.version = -1
        self.config: dict | None = None  # as received
        self.ingress: Any = None  # the compiled router (connector.ingress.Ingress) the data plane matches with
        self.last_error = ""
        self._stats = stats

    def apply(self, message: protocol.Config) -> protocol.ConfigAck:
        if message.version <= self.version:
            log.debug("Ignoring configuration version %s: running version %s", message.version, self.version)
            return protocol.ConfigAck(message.version, applied=False, error="", running_version=self.version)
        try:
            ingress = _compile_config(message.config)
        except ValueError as exc:  # IngressError is a ValueError
            return self._reject(message, str(exc))
        except Exception as exc:  # a validator bug must not take the connection down
            log.exception("Validating configuration version %s failed", message.version)
            return self._reject(message, f"internal error validating the configuration: {exc}")
        # The swap: no await between these assignments, so every reader sees the old or the new state whole.
        self.config, self.ingress, self.version, self.last_error = message.config, ingress, message.version, ""
        log.info("Updated to new configuration version=%s", message.version)
        return protocol.ConfigAck(message.version, applied=True, error="", running_version=self.version)

    def _reject(self, message: protocol.Config, error: str) -> protocol.ConfigAck:
        self._stats.config_errors += 1
        self.last_error = error
        log.error(
            "Rejected configuration version=%s, still running version=%s: %s", message.version, self.version, error
        )
        return protocol.ConfigAck(message.version, applied=False, error=error[:1000], running_version=self.version)


class Connection:
    """One registered websocket to the control plane."""

    def __init__(self, index: int, ws: WebSocket, stats: Stats) -> None:
        self.index = index
        self.ws = ws
        self.stats = stats
        self.welcome: protocol.Welcome | None = None
        self.draining = False  # DRAIN sent or received: no new streams
        self.streams: dict[int, Any] = {}  # in-flight data-plane streams (connector/dataplane.py)
        self.mux: Mux | None = None
        self.last_received = time.monotonic()
        self.pings: dict[int, float] = {}
        self._nonce = 0

    @property
    def registered(self) -> bool:
        return self.welcome is not None and not self.ws.closed

    async def send(self, message: protocol.Message) -> None:
        await self.ws.send(protocol.encode(message))
        self.stats.frames_sent[message.KIND.name] += 1

    async def receive(self) -> protocol.Message:
        data = await self.ws.recv()
        self.last_received = time.monotonic()
        if isinstance(data, str):
            raise ProtocolError("text message received; the protocol uses binary messages")
        message = protocol.decode(data)
        self.stats.frames_received[message.KIND.name] += 1
        return message

    async def receive_many(self) -> list[protocol.Message]:
        """The frames of the next message: several when the server sends a BATCH (we advertise `batch`)."""
        data = await self.ws.recv()
        self.last_received = time.monotonic()
        if isinstance(data, str):
            raise ProtocolError("text message received; the protocol uses binary messages")
        messages = protocol.decode_many(data)
        counts = self.stats.frames_received
        for message in messages:
            counts[message.KIND.name] += 1
        return messages

    async def ping(self) -> None:
        self._nonce += 1
        self.pings[self._nonce] = time.monotonic()
        if len(self.pings) > 8:  # unanswered pings are forgotten, not hoarded
            del self.pings[min(self.pings)]
        await self.send(protocol.Ping(nonce=self._nonce, ts=time.time()))

    def pong(self, message: protocol.Pong) -> None:
        sent = self.pings.pop(message.nonce, None)
        if sent is not None:
            self.stats.heartbeat_rtt[self.index] = time.monotonic() - sent


class Supervisor:
    def __init__(self, settings: Settings, stats: Stats | None = None) -> None:
        self.settings = settings
        self.stats = stats or Stats()
        self.connector_id = str(uuid.uuid4())
        self.config = ConfigState(self.stats)
        self.connections: dict[int, Connection] = {}
        self.stopping = False
        self._stop: asyncio.Event | None = None  # made in run(): on Python 3.9 an Event binds to the current loop
        self._tasks: list[asyncio.Task] = []
        self.hostname = socket.gethostname()
        self.arch = go_arch()
        self.dataplane = DataPlane(self.config, settings.origin_ca_file, self.connector_id)

    @property
    def ready_connections(self) -> int:
        return sum(1 for conn in self.connections.values() if conn.registered and not conn.draining)

    def registered_connections(self) -> list[Connection]:
        return [conn for conn in self.connections.values() if conn.registered]

    async def run(self) -> None:
        """Hold the connections until `stop()` is called, then drain them and return."""
        log.info("Generated Connector ID: %s", self.connector_id)
        self._stop = asyncio.Event()
        if self.stopping:
            self._stop.set()
        self._tasks = [asyncio.ensure_future(self._slot(index)) for index in range(self.settings.ha_connections)]
        try:
            await self._stop.wait()
            await self._drain()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self.dataplane.close()

    def stop(self) -> None:
        """Begin the drained shutdown (idempotent)."""
        if not self.stopping:
            log.info("Initiating graceful shutdown: draining connections for up to %ss", self.settings.grace_period)
        self.stopping = True
        if self._stop is not None:
            self._stop.set()

    async def _drain(self) -> None:
        connections = self.registered_connections()
        for conn in connections:
            conn.draining = True
        await asyncio.gather(
            *(self._send_quietly(conn, protocol.Drain("connector shutting down")) for conn in connections)
        )
        deadline = time.monotonic() + self.settings.grace_period
        while any(conn.streams for conn in connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.gather(
            *(conn.ws.close(CloseCode.GOING_AWAY, "connector shutting down", timeout=3.0) for conn in connections),
            return_exceptions=True,
        )

    async def _send_quietly(self, conn: Connection, message: protocol.Message) -> None:
        try:
            await asyncio.wait_for(conn.send(message), 3.0)
        except (ConnectionClosed, asyncio.TimeoutError, OSError):
            pass

    async def _sleep(self, delay: float) -> None:
        assert self._stop is not None
        try:
            await asyncio.wait_for(self._stop.wait(), delay)
        except asyncio.TimeoutError:
            pass

    # ------------------------------------------------------------------------------------------ one slot

    async def _slot(self, index: int) -> None:
        attempt = 0
        first = True
        while not self.stopping:
            if not first:
                self.stats.reconnects += 1
            first = False
            try:
                welcomed, refused = await self._run_connection(index)
            except Exception:  # a bug must cost one connection attempt, never the slot
                log.exception("Unexpected error on connection connIndex=%s", index)
                welcomed, refused = False, False
            if self.stopping:
                return
            if welcomed:
                attempt = 0
            if refused:
                delay = self.settings.backoff_cap * random.uniform(0.5, 1.0)
            else:
                delay = backoff_delay(attempt, self.settings.backoff_base, self.settings.backoff_cap)
                attempt += 1
            log.info("Retrying connection in %.1fs connIndex=%s", delay, index)
            await self._sleep(delay)

    async def _run_connection(self, index: int) -> tuple[bool, bool]:
        """Dial, register and serve one connection. Returns (was welcomed, was refused for its credentials)."""
        settings = self.settings
        headers = [("Authorization", settings.token.authorization), ("User-Agent", f"zt-connector/{__version__}")]
        try:
            ws = await connect(
                settings.url,
                headers=headers,
                ssl=settings.ssl,
                max_message_size=protocol.MAX_FRAME_SIZE,
                open_timeout=settings.open_timeout,
            )
        except HandshakeError as exc:
            refused = exc.status in _REFUSAL_STATUSES
            detail = f": {exc.body[:200]}" if exc.body else ""
            log.error("Failed to connect connIndex=%s: %s%s", index, exc, detail)
            return False, refused
        except (WebSocketError, OSError, ssl.SSLError) as exc:
            log.error("Failed to connect connIndex=%s to %s: %s", index, settings.url, exc or type(exc).__name__)
            return False, False

        conn = Connection(index, ws, self.stats)
        conn.mux = self.dataplane.attach(conn)
        self.connections[index] = conn
        heartbeat: asyncio.Task | None = None
        try:
            await conn.send(self._hello(index, ws))
            welcome = await asyncio.wait_for(self._await_welcome(conn), settings.welcome_timeout)
            conn.welcome = welcome
            log.info(
                "Registered tunnel connection connIndex=%s connection=%s location=%s server=%s",
                index,
                welcome.connection_id,
                welcome.location,
                welcome.server_id,
            )
            if self.stopping:
                await ws.close(CloseCode.GOING_AWAY, "connector shutting down", timeout=2.0)
                return True, False
            heartbeat = asyncio.ensure_future(self._heartbeat(conn, welcome.heartbeat_interval))
            conn.mux.batching = protocol.FEATURE_BATCH in welcome.features
            if welcome.auth_domain:  # where originRequest.access finds the team's keys (connector/access.py)
                verifier = self.dataplane.access
                verifier.base_url = http_base(settings.url)
                verifier.auth_domain, verifier.team_url = welcome.auth_domain, welcome.team_url
                verifier.ssl_context = settings.ssl
            mux = conn.mux
            while True:
                for message in await conn.receive_many():
                    kind = message.KIND
                    if kind == _REQUEST:  # the data plane: synchronous, never waiting on a stream's I/O
                        mux.on_request(message)  # type: ignore[arg-type]
                    elif kind >= 16:
                        mux.on_frame(message)
                    else:
                        await self._dispatch(conn, message)
        except ProtocolError as exc:
            self.stats.protocol_errors += 1
            log.error("Protocol violation from the control plane connIndex=%s: %s", index, exc.reason)
            await ws.close(CloseCode.PROTOCOL_VIOLATION, exc.reason, timeout=2.0)
        except asyncio.TimeoutError:
            log.error("No WELCOME within %ss connIndex=%s", settings.welcome_timeout, index)
            ws.abort()
        except ConnectionClosed as exc:
            return self._closed(conn, exc)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            conn.mux.close()
            if self.connections.get(index) is conn:
                del self.connections[index]
                self.stats.heartbeat_rtt.pop(index, None)  # /metrics shows live connections only
            if not ws.closed:
                ws.abort()
        return conn.welcome is not None, False

    async def _await_welcome(self, conn: Connection) -> protocol.Welcome:
        """WELCOME must be the server's first frame; only ERROR reports (e.g. why it is about to refuse us) may
        precede it."""
        while True:
            message = await conn.receive()
            if isinstance(message, protocol.Error):
                self._log_error(conn, message)
                continue
            if not isinstance(message, protocol.Welcome):
                raise ProtocolError(f"expected WELCOME, got {message.KIND.name}")
            return message

    def _log_error(self, conn: Connection, message: protocol.Error) -> None:
        log.warning("Error from the control plane connIndex=%s: %s %s", conn.index, message.code, message.message)

    def _closed(self, conn: Connection, exc: ConnectionClosed) -> tuple[bool, bool]:
        welcomed = conn.welcome is not None
        if self.stopping:  # our own closing handshake (the server may echo 1000 or 1001)
            log.info("Connection closed connIndex=%s", conn.index)
            return welcomed, False
        refused = exc.code in protocol.REFUSAL_CLOSE_CODES
        text = exc.reason or protocol.CLOSE_CODE_TEXT.get(exc.code, "") or "no reason given"
        level = logging.ERROR if refused or exc.code == CloseCode.PROTOCOL_VIOLATION else logging.WARNING
        log.log(level, "Connection terminated connIndex=%s code=%s: %s", conn.index, exc.code, text)
        return welcomed, refused

    def _hello(self, index: int, ws: WebSocket) -> protocol.Hello:
        local = ws.local_address
        return protocol.Hello(
            connector_id=self.connector_id,
            version=__version__,
            conn_index=index,
            ha_connections=self.settings.ha_connections,
            arch=self.arch,
            platform=platform_description()[:255],
            hostname=self.hostname[:255],
            local_ip=str(local[0]) if local else "",
            features=list(FEATURES),
            config_version=self.config.version,
        )

    async def _dispatch(self, conn: Connection, message: protocol.Message) -> None:
        if message.KIND >= 16:  # the data plane: handled synchronously, never waiting on a stream's I/O
            assert conn.mux is not None
            if message.KIND == protocol.Kind.REQUEST:
                conn.mux.on_request(message)  # type: ignore[arg-type]
            else:
                conn.mux.on_frame(message)
        elif isinstance(message, protocol.Config):
            ack = self.config.apply(message)
            if ack.applied and message.origin_ca:
                self.dataplane.set_origin_ca(message.origin_ca)
            await conn.send(ack)
        elif isinstance(message, protocol.Ping):
            await conn.send(protocol.Pong(nonce=message.nonce, ts=message.ts))
        elif isinstance(message, protocol.Pong):
            conn.pong(message)
        elif isinstance(message, protocol.Drain):
            conn.draining = True
            log.info("The control plane is draining connIndex=%s: %s", conn.index, message.reason or "no reason given")
        elif isinstance(message, protocol.Error):
            self._log_error(conn, message)
        else:
            raise ProtocolError(f"unexpected {message.KIND.name} from the server")

    async def _heartbeat(self, conn: Connection, interval: float) -> None:
        """PING every interval; a connection silent for HEARTBEAT_MISSES intervals is dead and is dropped."""
        deadline_span = protocol.HEARTBEAT_MISSES * interval
        next_ping = time.monotonic() + interval
        try:
            while True:
                now = time.monotonic()
                silent_until = conn.last_received + deadline_span
                await asyncio.sleep(max(0.0, min(next_ping, silent_until) - now))
                now = time.monotonic()
                if now - conn.last_received >= deadline_span:
                    log.warning(
                        "Nothing received for %.1fs, declaring connection dead connIndex=%s",
                        now - conn.last_received,
                        conn.index,
                    )
                    conn.ws.abort("heartbeat timeout")
                    return
                if now >= next_ping:
                    next_ping = now + interval
                    await asyncio.wait_for(conn.ping(), interval)
        except (ConnectionClosed, asyncio.TimeoutError, OSError):
            conn.ws.abort()
