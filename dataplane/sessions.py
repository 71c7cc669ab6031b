"""The hub's session registry: the connector connections this process holds, by tunnel, and the cache of their
tunnels' secrets and configurations (with its invalidation by `config` / `tunnel` events); where a request for a
tunnel goes (pick_session); what a connection's open, close, config ack and DRAIN change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from django.utils import timezone

from connector import protocol
from dataplane.streams import EdgeStream
from tunnels import ledger
from tunnels.events import ConfigChanged, Disconnect, TunnelChanged
from tunnels.runtime import origin_ca_bundle

if TYPE_CHECKING:
    from dataplane.peers import PeerDirectory
    from dataplane.session import Session

logger = logging.getLogger("tunnels.hub")


# Bytes queued for one connector connection above which senders wait for the writer (a visitor websocket that
# streams faster than the connector reads; HTTP bodies are bounded by their stream windows anyway).
SEND_QUEUE_HIGH = 1024 * 1024

# Data-plane frames queued in one event-loop turn leave together, in one BATCH, at the end of the turn; but once this
# many are waiting and the connection can be written at once (send_now), they leave there and then, so that the
# connector starts on the first requests of a burst while the edge still reads the rest. Measured (bench/edge,
# interleaved A/B, docs/benchmarks.md "Edge"): 8 gave +14 % req/s at c=50 over end-of-turn only; 4 and 16 less.
EARLY_FLUSH_FRAMES = 8


@dataclass
class ConnectorSession:
    """One registered connector connection held by this process: a `Session` (dataplane/session.py)."""

    connection_id: uuid.UUID
    organisation_id: uuid.UUID
    tunnel_id: uuid.UUID
    connector_id: uuid.UUID
    conn_index: int
    origin_ip: str
    send_bytes: Callable[[bytes], Awaitable[None]]
    close: Callable[[int, str], Awaitable[None]]
    # Writes one message at once, without a coroutine, where the server allows it (uvicorn's websockets-sansio:
    # dataplane.connector_socket.sync_sender); None elsewhere (daphne), where only the writer task sends.
    send_now: Callable[[bytes], None] | None = field(default=None, repr=False)
    acked_version: int = -1
    sent_version: int = -1
    features: frozenset[str] = frozenset()
    last_rx: float = field(default_factory=time.monotonic)
    last_ping: float = field(default_factory=time.monotonic)
    draining: bool = False
    closed: bool = False
    # Data plane (dataplane/streams.py): streams opened by the edge on this connection, odd ids, never reused.
    streams: dict[int, Any] = field(default_factory=dict)
    next_stream_id: int = 1
    background: set[asyncio.Task] = field(default_factory=set)
    # Data-plane frames wait here for the writer task, which sends what accumulated during one event-loop turn
    # together: one BATCH message when the connector advertised `batch` (measured in docs/benchmarks.md, "Edge").
    batching: bool = False
    _out: list[bytes] = field(default_factory=list, repr=False)
    _queued: int = 0
    _writer: asyncio.Task | None = field(default=None, repr=False)
    _writing: bool = field(default=False, repr=False)  # the writer is between the frames it took
    _wakeup: asyncio.Future | None = field(default=None, repr=False)
    _drained: asyncio.Future | None = field(default=None, repr=False)
    # The connection's event loop, for the per-request futures (asyncio.get_running_loop() costs a getpid()).
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop, repr=False)

    # Headers put first in every REQUEST on this connection (none: a peer link's view names its tunnel there).
    request_prefix: ClassVar[tuple[tuple[bytes, bytes], ...]] = ()

    async def send(self, message: Any) -> None:
        """Control messages go out at once; data-plane ones through the writer's queue (same order per stream)."""
        if self.closed:
            return
        if message.KIND >= 16:
            await self.send_frame(protocol.encode(message))
        else:
            await self.send_bytes(protocol.encode(message))

    async def send_frame(self, frame: bytes) -> None:
        """Queue an encoded data-plane frame; waits only while the queue is above SEND_QUEUE_HIGH."""
        if self.closed:
            return
        self.queue_frame(frame)
        while self._queued > SEND_QUEUE_HIGH and not self.closed:
            if self._drained is None or self._drained.done():
                self._drained = self.loop.create_future()
            await asyncio.shield(self._drained)

    def queue_frame(self, frame: bytes) -> None:
        if self.closed:
            return
        self._out.append(frame)
        self._queued += len(frame)
        if len(self._out) >= EARLY_FLUSH_FRAMES and self.send_now is not None and not self._writing:
            self._flush_now()
            return
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)
        elif self._writer is None:
            self._writer = asyncio.ensure_future(self._write_loop())

    async def _write_loop(self) -> None:
        loop = self.loop
        try:
            while not self.closed:
                if not self._out:
                    self._wakeup = loop.create_future()
                    await self._wakeup
                    continue
                frames, self._out = self._out, []
                self._queued = 0
                if self.batching and len(frames) > 1:
                    frames = protocol.encode_batches(frames)
                self._writing = True  # no early flush may overtake the frames taken here
                try:
                    for frame in frames:
                        await self.send_bytes(frame)
                finally:
                    self._writing = False
                drained = self._drained
                if drained is not None and not drained.done() and self._queued <= SEND_QUEUE_HIGH:
                    drained.set_result(None)
        except Exception:  # the socket is gone: the endpoint's receive loop unregisters the session
            logger.debug("connector connection writer stopped", exc_info=True)
        finally:
            self._writer = None
            self._out = []
            if self._drained is not None and not self._drained.done():
                self._drained.set_result(None)

    def _flush_now(self) -> None:
        """What is queued, written at once (send_now), in order: nothing else is being written (not _writing)."""
        assert self.send_now is not None
        frames, self._out = self._out, []
        self._queued = 0
        if self.batching and len(frames) > 1:
            frames = protocol.encode_batches(frames)
        try:
            for frame in frames:
                self.send_now(frame)
        except Exception:  # the socket is gone: the endpoint's receive loop unregisters the session
            logger.debug("connector connection write failed", exc_info=True)
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    def stop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    @property
    def carries_streams(self) -> bool:
        return protocol.FEATURE_STREAMS in self.features and not self.draining and not self.closed

    def advertises(self, feature: str) -> bool:
        return feature in self.features

    def open_stream(self):
        stream = EdgeStream(self, self.next_stream_id)
        self.next_stream_id += 2
        self.streams[stream.id] = stream
        if self.closed:  # lost between pick_session() and now: fail at once rather than wait for a response
            stream.fail(protocol.ResetCode.INTERNAL_ERROR, "the connector connection was lost")
        return stream

    def dispatch_stream_frame(self, message: Any) -> None:
        stream = self.streams.get(message.stream_id)
        if stream is not None:  # frames of unknown or finished streams are dropped, as in HTTP/2
            stream.on_frame(message)

    def fail_streams(self, reason: str) -> None:
        for stream in list(self.streams.values()):
            stream.fail(protocol.ResetCode.INTERNAL_ERROR, reason, connection_lost=True)

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


@dataclass
class CachedTunnel:
    organisation_id: uuid.UUID
    secret: bytes
    deleted: bool
    config_version: int
    config: dict[str, Any]
    origin_ca: str = ""  # the Origin CA roots (PEM) as loaded with this version (certificates/ca.py)
    _config_frame: bytes | None = field(default=None, repr=False, compare=False)

    def config_frame(self) -> bytes:
        """The CONFIG frame of this version, encoded once for all the tunnel's connections."""
        if self._config_frame is None:
            self._config_frame = protocol.encode(
                protocol.Config(version=self.config_version, config=self.config, origin_ca=self.origin_ca)
            )
        return self._config_frame


class SessionRegistry:
    """Part of Hub (dataplane/hub.py). Uses the hub's `db`, `stats`, `batch`, `peers`, `_wake_flush` (loops.py) and
    `_status_for` (fanout.py)."""

    peers: PeerDirectory | None
    stats: dict[str, int]
    batch: ledger.Batch
    db: Callable[..., Awaitable[Any]]
    _wake_flush: Callable[[], None]
    _holdings_dirty: set[uuid.UUID]
    _status_for: Callable[..., Awaitable[None]]

    def _init_registry(self) -> None:
        self.sessions: dict[uuid.UUID, dict[uuid.UUID, ConnectorSession]] = {}
        # (tunnel, connector, conn_index) -> its live session: a reconnect finds the one it supersedes in O(1)
        # (scanning the tunnel's sessions made a 10,000-connection storm on one tunnel quadratic).
        self._slots: dict[tuple[uuid.UUID, uuid.UUID, int], ConnectorSession] = {}
        self.tunnels: dict[uuid.UUID, CachedTunnel] = {}
        # One database load per tunnel at a time: a reconnect storm's connections share it (measured: 10,000
        # concurrent cache misses queued 10,000 loads on the two database threads, most of a 70 s storm).
        self._loading: dict[uuid.UUID, asyncio.Future] = {}
        self._turns: dict[uuid.UUID, int] = {}
        self._sticky: dict[uuid.UUID, ConnectorSession] = {}  # this turn's pick per tunnel (pick_session)

    def _subscribe_registry(self, subscribe: Callable[[Any, Any], None]) -> None:
        subscribe(ConfigChanged, self._on_config_changed)
        subscribe(TunnelChanged, self._on_tunnel_changed)
        subscribe(Disconnect, self._on_disconnect)

    async def tunnel_for_token(self, tunnel_id: uuid.UUID) -> CachedTunnel | None:
        cached = self.tunnels.get(tunnel_id)
        if cached is None:
            cached = await asyncio.shield(self._load_once(tunnel_id))
        return cached

    def _load_once(self, tunnel_id: uuid.UUID) -> asyncio.Future:
        """The tunnel's load in flight, or a new one; it fills the cache unless the tunnel changed meanwhile."""
        loading = self._loading.get(tunnel_id)
        if loading is None:
            loading = self._loading[tunnel_id] = asyncio.ensure_future(self.db(load_tunnel, tunnel_id))

            def done(task: asyncio.Future) -> None:
                if self._loading.get(tunnel_id) is not task:
                    return  # forgotten while loading (_forget_tunnel): the row may be stale, do not cache it
                del self._loading[tunnel_id]
                if not task.cancelled() and task.exception() is None and task.result() is not None:
                    self.tunnels[tunnel_id] = task.result()

            loading.add_done_callback(done)
        return loading

    def _forget_tunnel(self, tunnel_id: uuid.UUID) -> None:
        self.tunnels.pop(tunnel_id, None)
        self._loading.pop(tunnel_id, None)

    async def register(self, session: ConnectorSession, hello: protocol.Hello, **meta: Any) -> None:
        # The same connector reconnecting an index supersedes its old connection.
        other = self._slots.get(_slot(session))
        if other is not None and other is not session:
            await self.unregister(other, "superseded by a new connection with the same index")
            with contextlib.suppress(Exception):
                await other.close(protocol.CloseCode.DISCONNECTED, "superseded by a newer connection")
        self.sessions.setdefault(session.tunnel_id, {})[session.connection_id] = session
        self._slots[_slot(session)] = session
        session.acked_version = hello.config_version
        session.features = frozenset(hello.features)
        session.batching = protocol.FEATURE_BATCH in session.features
        self.stats["connects"] += 1
        self.batch.opens.append(
            ledger.ConnOpen(
                connection_id=session.connection_id,
                organisation_id=session.organisation_id,
                tunnel_id=session.tunnel_id,
                connector_id=session.connector_id,
                conn_index=session.conn_index,
                expected_connections=hello.ha_connections,
                version=hello.version,
                arch=hello.arch,
                platform=hello.platform,
                hostname=hello.hostname,
                local_ip=hello.local_ip,
                origin_ip=session.origin_ip,
                features=list(hello.features),
                config_version=hello.config_version,
                opened_at=timezone.now(),
            )
        )
        self._wake_flush()

    async def unregister(self, session: ConnectorSession, reason: str) -> None:
        if session.closed:
            return
        session.closed = True
        if self._slots.get(_slot(session)) is session:
            del self._slots[_slot(session)]
        session.stop_writer()
        session.fail_streams(f"connector connection lost: {reason}")
        peers = self.sessions.get(session.tunnel_id)
        if peers is not None:
            peers.pop(session.connection_id, None)
            if not peers:
                del self.sessions[session.tunnel_id]
        self.batch.closes.append(
            ledger.ConnClose(
                connection_id=session.connection_id,
                organisation_id=session.organisation_id,
                tunnel_id=session.tunnel_id,
                connector_id=session.connector_id,
                reason=reason,
                closed_at=timezone.now(),
            )
        )
        self._wake_flush()

    def _config_due(self, session: ConnectorSession) -> bytes | None:
        """The CONFIG frame the connection has not been sent yet (marked sent), or None."""
        cached = self.tunnels.get(session.tunnel_id)
        if cached is None or cached.config_version <= max(session.acked_version, session.sent_version):
            return None
        if cached.config_version == 0 and not cached.config:
            return None  # nothing configured yet: the connector answers 503 until a first version arrives
        session.sent_version = cached.config_version
        return None if session.closed else cached.config_frame()

    async def push_config(self, session: ConnectorSession) -> None:
        frame = self._config_due(session)
        if frame is not None:
            await session.send_bytes(frame)

    async def push_config_to_all(self, sessions: list[ConnectorSession]) -> None:
        """The tunnel's new CONFIG frame (encoded once) to each of its connections here: written at once where the
        server allows it (send_now, uvicorn), without a task or an ASGI message per connection; elsewhere (daphne)
        sent concurrently, as push_config does. Measured on 1,000 connections (bench/connectors, CPU per push):
        docs/benchmarks.md, "Connectors"."""
        waiting = []
        for session in sessions:
            send_now = session.send_now
            if send_now is None:
                waiting.append(session)
                continue
            frame = self._config_due(session)
            if frame is None:
                continue
            try:
                send_now(frame)
            except Exception:  # the socket is gone: its endpoint's receive loop unregisters the session
                logger.debug("CONFIG not written to a closing connection", exc_info=True)
        if waiting:
            await asyncio.gather(*(self.push_config(s) for s in waiting))

    async def config_acked(self, session: ConnectorSession, ack: protocol.ConfigAck) -> None:
        session.acked_version = ack.running_version if ack.running_version >= 0 else session.acked_version
        if ack.applied:
            session.acked_version = max(session.acked_version, ack.version)
        if ack.applied or ack.error:
            self.batch.acks.append(
                ledger.ConfigAck(
                    organisation_id=session.organisation_id,
                    tunnel_id=session.tunnel_id,
                    connector_id=session.connector_id,
                    version=ack.version,
                    error=ack.error,
                )
            )
            self._wake_flush()

    def session_draining(self, session: ConnectorSession) -> None:
        """DRAIN from a connector: no new streams on this connection; the peers hear it if it was the tunnel's
        last carrying connection here."""
        session.draining = True
        if self.peers is not None:
            self._holdings_dirty.add(session.tunnel_id)
            self._wake_flush()

    def pick_session(self, tunnel_id: uuid.UUID, exclude: Collection[int] = ()) -> Session | None:
        """Where a request for the tunnel goes (dataplane/session.py): a connection held by this process, else the
        link to another instance holding one (a PeerSession, dataplane/peers.py; never a database query). Sessions
        whose id() is in `exclude` (a retry's earlier tries) are skipped."""
        session = self.pick_local_session(tunnel_id, exclude)
        if session is None and self.peers is not None:
            view = self.peers.pick(tunnel_id)
            return view if view is not None and id(view) not in exclude else None
        return session

    def pick_local_session(self, tunnel_id: uuid.UUID, exclude: Collection[int] = ()) -> ConnectorSession | None:
        """A connection of the tunnel held by this process that carries requests, spreading streams across
        connectors and their connections: round robin per event-loop turn (draining ones skipped). The requests
        that arrive in one turn go down the same connection, so they leave in one BATCH instead of one per
        connection: with a connector's 2 connections, ~8 % less CPU per request in the edge and in the connector
        (docs/benchmarks.md, "Edge"). The choice lasts one turn, so a congested connection gets no more than that."""
        sticky = self._sticky.get(tunnel_id)
        if sticky is not None and sticky.carries_streams and id(sticky) not in exclude:
            return sticky
        peers = self.sessions.get(tunnel_id)
        if not peers:
            return None
        candidates = [s for s in peers.values() if s.carries_streams and id(s) not in exclude]
        if not candidates:
            return None
        turn = self._turns.get(tunnel_id, 0)
        self._turns[tunnel_id] = turn + 1
        chosen = candidates[turn % len(candidates)]
        if len(candidates) > 1:
            if not self._sticky:
                asyncio.get_running_loop().call_soon(self._sticky.clear)
            self._sticky[tunnel_id] = chosen
        return chosen

    # -- events -----------------------------------------------------------------------------------------------

    async def _on_config_changed(self, event: ConfigChanged) -> None:
        tunnel_id = event.tunnel_id
        self._forget_tunnel(tunnel_id)
        if tunnel_id in self.sessions:
            await self.tunnel_for_token(tunnel_id)
            await self.push_config_to_all(list(self.sessions.get(tunnel_id, {}).values()))
        await self._status_for(event.organisation_id, {tunnel_id}, local_only=True)

    async def _on_tunnel_changed(self, event: TunnelChanged) -> None:
        self._forget_tunnel(event.tunnel_id)
        await self._status_for(event.organisation_id, {event.tunnel_id}, local_only=True)

    async def _on_disconnect(self, event: Disconnect) -> None:
        connector = event.connector_id
        targets = [
            s
            for s in list(self.sessions.get(event.tunnel_id, {}).values())
            if connector is None or s.connector_id == connector
        ]
        for session in targets:
            await self.unregister(session, event.reason or "disconnected")
            with contextlib.suppress(Exception):
                await session.close(event.code or protocol.CloseCode.DISCONNECTED, event.reason)


def _slot(session: ConnectorSession) -> tuple[uuid.UUID, uuid.UUID, int]:
    return (session.tunnel_id, session.connector_id, session.conn_index)


def load_tunnel(tunnel_id: uuid.UUID) -> CachedTunnel | None:
    return load_tunnels([tunnel_id]).get(tunnel_id)


def load_tunnels(tunnel_ids: list[uuid.UUID]) -> dict[uuid.UUID, CachedTunnel]:
    from django.db import close_old_connections

    from tunnels.models import Tunnel
    from tunnels.secrets import decrypt_secret

    close_old_connections()
    origin_ca = origin_ca_bundle()
    loaded = {}
    for start in range(0, len(tunnel_ids), 5000):  # bound the IN list (SQLite allows 32,766 parameters)
        tunnels = (
            Tunnel.objects.unscoped("a connector's token names its tunnel")
            .filter(pk__in=tunnel_ids[start : start + 5000])
            .only("organisation_id", "secret_ciphertext", "deleted_at", "config_version", "config")
        )
        for tunnel in tunnels:
            loaded[tunnel.pk] = CachedTunnel(
                organisation_id=tunnel.organisation_id,
                secret=decrypt_secret(tunnel.secret_ciphertext),
                deleted=tunnel.deleted_at is not None,
                config_version=tunnel.config_version,
                config=tunnel.config or {},
                origin_ca=origin_ca,
            )
    return loaded
