"""The per-process hub: every connector connection and every live-status browser socket of this process,
and the events that reach them.

Measured on these machines: a Channels consumer per connection, each with its own channel-layer receive loop,
needs ~60 s to accept 10,000 sockets and half a core at idle, and a group_send to 1,000 sockets takes 300–450 ms.
So there is one hub per process: sockets are plain ASGI websockets registered in dictionaries, an event is
delivered to the local sockets directly, and the channel layer (Redis pub/sub in production) is used once per
process to hear events published by other processes. Database writes for connection opens/closes/acks are
batched by the ledger. One sweeper task per process handles heartbeats for all connections. With several instances,
the hub also knows which other instances hold which tunnels, and requests for those go to them over direct peer
links (edge/peers.py), never through the channel layer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.utils import timezone

from connector import protocol
from tunnels import ledger

if TYPE_CHECKING:
    from edge.peers import PeerDirectory, PeerRelay, PeerTunnelView

logger = logging.getLogger(__name__)

HUB_GROUP = "zt-hub"
FLUSH_INTERVAL = 0.05
FLUSH_RETRY_DELAY = 1.0  # seconds before rows the database could not take are tried again
# Every this many housekeeping turns (SERVER_INSTANCE_HEARTBEAT_SECONDS each), this instance's open connection rows
# are checked against its live sessions anyway (one indexed query), whatever went wrong unnoticed.
REPAIR_EVERY_TURNS = 6
# Young-generation threshold of the garbage collector in a process holding connector sockets (CPython's is 700).
GC_THRESHOLD0 = 50_000


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
    """One registered connector connection held by this process."""

    connection_id: uuid.UUID
    organisation_id: uuid.UUID
    tunnel_id: uuid.UUID
    connector_id: uuid.UUID
    conn_index: int
    origin_ip: str
    send_bytes: Callable[[bytes], Awaitable[None]]
    close: Callable[[int, str], Awaitable[None]]
    # Writes one message at once, without a coroutine, where the server allows it (uvicorn's websockets-sansio:
    # tunnels.endpoints.sync_sender); None elsewhere (daphne), where only the writer task sends.
    send_now: Callable[[bytes], None] | None = field(default=None, repr=False)
    acked_version: int = -1
    sent_version: int = -1
    features: frozenset[str] = frozenset()
    last_rx: float = field(default_factory=time.monotonic)
    last_ping: float = field(default_factory=time.monotonic)
    draining: bool = False
    closed: bool = False
    # Data plane (edge/streams.py): streams opened by the edge on this connection, odd ids, never reused.
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

    def open_stream(self):
        stream = _edge_stream(self, self.next_stream_id)
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


def _edge_stream(session: ConnectorSession, stream_id: int):
    global _edge_stream
    from edge.streams import EdgeStream  # the edge imports this module: resolved on first use

    _edge_stream = EdgeStream
    return EdgeStream(session, stream_id)


@dataclass(eq=False)
class Watcher:
    """A browser socket following one organisation's tunnels."""

    organisation_id: uuid.UUID
    send_json: Callable[[dict[str, Any]], Awaitable[None]]


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


class Hub:
    def __init__(self) -> None:
        self.server_id = f"{socket.gethostname()[:24]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.started_at = timezone.now()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sessions: dict[uuid.UUID, dict[uuid.UUID, ConnectorSession]] = {}
        # (tunnel, connector, conn_index) -> its live session: a reconnect finds the one it supersedes in O(1)
        # (scanning the tunnel's sessions made a 10,000-connection storm on one tunnel quadratic).
        self._slots: dict[tuple[uuid.UUID, uuid.UUID, int], ConnectorSession] = {}
        self.watchers: dict[uuid.UUID, set[Watcher]] = {}
        self.tunnels: dict[uuid.UUID, CachedTunnel] = {}
        # One database load per tunnel at a time: a reconnect storm's connections share it (measured: 10,000
        # concurrent cache misses queued 10,000 loads on the two database threads, most of a 70 s storm).
        self._loading: dict[uuid.UUID, asyncio.Future] = {}
        # Tunnel -> when (loop time) its pending health check runs.
        self._health_checks: dict[uuid.UUID, float] = {}
        self.batch = ledger.Batch()
        self._db = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="hub-db")
        self._tasks: list[asyncio.Task] = []
        self._flush_wakeup: asyncio.Event | None = None
        self._layer_channel: str | None = None
        self._nonce = itertools.count(1)
        self._turns: dict[uuid.UUID, int] = {}
        self._sticky: dict[uuid.UUID, ConnectorSession] = {}  # this turn's pick per tunnel (pick_session)
        self.location = os.environ.get("EDGE_LOCATION", socket.gethostname()[:16])
        # The edge's route table registers here to be reloaded when a `routes` event arrives.
        self.on_routes_changed: Callable[[], Awaitable[None]] | None = None
        # Other event kinds by subscriber (e.g. the edge's Access gate drops an organisation's view on `access`).
        self.subscribers: dict[str, list[Callable[[dict[str, Any]], Awaitable[None]]]] = {}
        # Cross-instance forwarding (edge/peers.py), with a shared channel layer only: which other instances hold
        # which tunnels and the links to them; the links peers opened to us; the address we advertise.
        self.peers: PeerDirectory | None = None
        self.peer_relays: set[PeerRelay] = set()
        self.peer_url = ""
        self._repair_due = False  # a row could not be written: close the rows the live sessions contradict
        self._housekeeping_turns = 0
        self._holdings_dirty: set[uuid.UUID] = set()  # tunnels whose connections stopped carrying streams (DRAIN)
        self._peer_url_warned = False
        self.stats = {"connects": 0, "refused": 0, "events": 0}

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def ensure_started(self) -> None:
        if self.loop is not None:
            return
        self.loop = asyncio.get_running_loop()
        tune_gc()
        self._flush_wakeup = asyncio.Event()
        if uses_shared_layer():
            from edge.peers import PeerDirectory, own_peer_url

            self.peers = PeerDirectory(self)
            self.peer_url = own_peer_url()
        await self._heartbeat_instance()
        # Without a shared channel layer there is only one process: connections any earlier run left open are gone.
        changed = await self.db(
            ledger.reconcile_lost_instances,
            self.server_id,
            _seconds(settings.SERVER_INSTANCE_DEADLINE_SECONDS),
            all_others=not uses_shared_layer(),
        )
        self._tasks = [
            asyncio.ensure_future(self._flush_loop()),
            asyncio.ensure_future(self._sweep_loop()),
            asyncio.ensure_future(self._instance_loop()),
        ]
        if uses_shared_layer():
            self._tasks.append(asyncio.ensure_future(self._layer_loop()))
        await self._tunnels_changed(changed)
        await self._reload_peers()
        logger.info("hub %s started", self.server_id)

    async def db(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, lambda: func(*args, **kwargs))

    # -- connectors -------------------------------------------------------------------------------------------

    async def tunnel_for_token(self, tunnel_id: uuid.UUID) -> CachedTunnel | None:
        cached = self.tunnels.get(tunnel_id)
        if cached is None:
            cached = await asyncio.shield(self._load_once(tunnel_id))
        return cached

    def _load_once(self, tunnel_id: uuid.UUID) -> asyncio.Future:
        """The tunnel's load in flight, or a new one; it fills the cache unless the tunnel changed meanwhile."""
        loading = self._loading.get(tunnel_id)
        if loading is None:
            loading = self._loading[tunnel_id] = asyncio.ensure_future(self.db(_load_tunnel, tunnel_id))

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

    async def push_config(self, session: ConnectorSession) -> None:
        cached = self.tunnels.get(session.tunnel_id)
        if cached is None or cached.config_version <= max(session.acked_version, session.sent_version):
            return
        if cached.config_version == 0 and not cached.config:
            return  # nothing configured yet: the connector answers 503 until a first version arrives
        session.sent_version = cached.config_version
        if not session.closed:
            await session.send_bytes(cached.config_frame())

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

    def pick_session(
        self, tunnel_id: uuid.UUID, exclude: Collection[int] = ()
    ) -> ConnectorSession | PeerTunnelView | None:
        """Where a request for the tunnel goes: a connection held by this process, else the link to another
        instance holding one (edge/peers.py; never a database query). Sessions whose id() is in `exclude` (a
        retry's earlier tries) are skipped."""
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

    # -- browser watchers -------------------------------------------------------------------------------------

    def watch(self, watcher: Watcher) -> None:
        self.watchers.setdefault(watcher.organisation_id, set()).add(watcher)

    def unwatch(self, watcher: Watcher) -> None:
        group = self.watchers.get(watcher.organisation_id)
        if group is not None:
            group.discard(watcher)
            if not group:
                del self.watchers[watcher.organisation_id]

    async def _notify_watchers(self, organisation_id: uuid.UUID, message: dict[str, Any]) -> None:
        for watcher in list(self.watchers.get(organisation_id, ())):
            try:
                await watcher.send_json(message)
            except Exception:  # a socket that went away; its handler unregisters it
                logger.debug("status watcher send failed", exc_info=True)

    # -- events -----------------------------------------------------------------------------------------------

    def subscribe(self, kind: str, handler: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Deliver events of `kind` to `handler` (a feature subscribes from its own app)."""
        self.subscribers.setdefault(kind, []).append(handler)

    async def handle_event(self, event: dict[str, Any]) -> None:
        self.stats["events"] += 1
        kind = event.get("kind")
        handlers = self.subscribers.get(kind or "")
        if handlers:
            for handler in handlers:
                await handler(event)
            return
        if kind == "routes":
            if self.on_routes_changed is not None:
                await self.on_routes_changed()
            return
        if kind == "holders":
            if self.peers is not None:
                self.peers.on_event(event)
            return
        tunnel_id = uuid.UUID(event["tunnel"])
        org_id = uuid.UUID(event["org"])
        if kind == "config":
            self._forget_tunnel(tunnel_id)
            if tunnel_id in self.sessions:
                await self.tunnel_for_token(tunnel_id)
                await asyncio.gather(*(self.push_config(s) for s in list(self.sessions.get(tunnel_id, {}).values())))
            await self._status_for(org_id, {tunnel_id}, local_only=True)
        elif kind == "tunnel":
            self._forget_tunnel(tunnel_id)
            await self._status_for(org_id, {tunnel_id}, local_only=True)
        elif kind == "disconnect":
            connector = event.get("connector")
            targets = [
                s
                for s in list(self.sessions.get(tunnel_id, {}).values())
                if connector is None or str(s.connector_id) == connector
            ]
            for session in targets:
                await self.unregister(session, event.get("reason") or "disconnected")
                with contextlib.suppress(Exception):
                    await session.close(
                        int(event.get("code") or protocol.CloseCode.DISCONNECTED), event.get("reason", "")
                    )
        elif kind == "status":
            snapshot = event.get("snapshot")
            if snapshot is not None:
                await self._notify_watchers(org_id, {"type": "tunnel", "tunnel": snapshot})
            else:
                await self._status_for(org_id, {tunnel_id}, local_only=True)

    async def _status_for(self, org_id: uuid.UUID, tunnel_ids: set[uuid.UUID], *, local_only: bool) -> None:
        """Compute the tunnels' status once and push it to this process's watchers (and, unless local_only,
        to the other processes' watchers through the layer)."""
        if org_id not in self.watchers and (local_only or not uses_shared_layer()):
            return  # nobody can see it (measured: a storm's flushes otherwise recompute status for no one)
        snapshots = await self.db(status_snapshots, org_id, tunnel_ids)
        for snapshot in snapshots:
            await self._notify_watchers(org_id, {"type": "tunnel", "tunnel": snapshot})
            if not local_only and uses_shared_layer():
                await self._broadcast(
                    {"kind": "status", "org": str(org_id), "tunnel": snapshot["id"], "snapshot": snapshot}
                )

    async def _tunnels_changed(self, changed: set[tuple[uuid.UUID, uuid.UUID]]) -> None:
        by_org: dict[uuid.UUID, set[uuid.UUID]] = {}
        for org_id, tunnel_id in changed:
            by_org.setdefault(org_id, set()).add(tunnel_id)
        for org_id, tunnel_ids in by_org.items():
            await self._status_for(org_id, tunnel_ids, local_only=False)
            for tunnel_id in tunnel_ids:
                self._schedule_health_check(org_id, tunnel_id)

    def _schedule_health_check(self, org_id: uuid.UUID, tunnel_id: uuid.UUID) -> None:
        """Flap damping: the alert task looks at the status a delay after each change. Changes of a tunnel less
        than a second (a tenth of the delay, if shorter) apart share one check: a storm changes a tunnel in
        flush after flush (measured: ~100 checks of a 10,000-connection tunnel, ~10 s of CPU, a minute later)."""
        from tunnels.tasks import check_tunnel_health

        assert self.loop is not None
        delay = settings.TUNNEL_HEALTH_NOTIFY_DELAY_SECONDS
        due = self.loop.time() + delay
        pending = self._health_checks.get(tunnel_id)
        if pending is not None and due - pending < min(1.0, delay / 10):
            return  # the pending check runs at most a second before this change's own would
        self._health_checks[tunnel_id] = due

        def enqueue() -> None:
            if self._health_checks.get(tunnel_id) == due:
                del self._health_checks[tunnel_id]
            self._db.submit(
                _run_quietly, check_tunnel_health.delay, organisation_id=str(org_id), tunnel_id=str(tunnel_id)
            )

        self.loop.call_later(delay, enqueue)

    # -- background loops -------------------------------------------------------------------------------------

    def _wake_flush(self) -> None:
        if self._flush_wakeup is not None:
            self._flush_wakeup.set()

    async def _flush_loop(self) -> None:
        assert self._flush_wakeup is not None
        while True:
            await self._flush_wakeup.wait()
            await asyncio.sleep(FLUSH_INTERVAL)  # gather what arrives meanwhile into the same transaction
            self._flush_wakeup.clear()
            batch, self.batch = self.batch, ledger.Batch()
            holdings, self._holdings_dirty = self._holdings_dirty, set()
            changed = None
            if batch:
                try:
                    flushed = await self.db(ledger.flush, batch, self.server_id)
                except Exception:
                    logger.exception("writing %d opens / %d closes failed", len(batch.opens), len(batch.closes))
                    flushed = ledger.Flushed(pending=batch)
                changed = flushed.changed
                await self._after_flush(flushed)
            if self._repair_due:
                self._repair_due = False
                changed = (changed or set()) | await self._repair_open_connections()
            holdings |= {o.tunnel_id for o in batch.opens} | {c.tunnel_id for c in batch.closes}
            await self._announce_holdings(holdings)
            if changed is not None:
                await self._tunnels_changed(changed)

    async def _after_flush(self, flushed: ledger.Flushed) -> None:
        """Never drop state: rows the database could not take now are queued again (before newer ones) and retried
        after a pause; a connection whose open row cannot be written is closed (its status could never show it);
        a skipped close is repaired from the live sessions at once."""
        if flushed.pending:
            pending = flushed.pending
            self.batch = ledger.Batch(
                opens=pending.opens + self.batch.opens,
                closes=pending.closes + self.batch.closes,
                acks=pending.acks + self.batch.acks,
            )
            assert self.loop is not None
            self.loop.call_later(FLUSH_RETRY_DELAY, self._wake_flush)
        for item in flushed.skipped:
            self._repair_due = True
            if isinstance(item, ledger.ConnOpen):
                session = self.sessions.get(item.tunnel_id, {}).get(item.connection_id)
                if session is not None:
                    await self.unregister(session, "the server could not record this connection")
                    with contextlib.suppress(Exception):
                        await session.close(protocol.CloseCode.INTERNAL_ERROR, "the server could not record it")

    async def _repair_open_connections(self) -> set[tuple[uuid.UUID, uuid.UUID]]:
        live = {connection_id for peers in self.sessions.values() for connection_id in peers}
        closing = {c.connection_id for c in self.batch.closes}
        try:
            return await self.db(ledger.repair_open_connections, self.server_id, live, closing)
        except Exception:
            logger.exception("repairing this instance's connection rows failed; retried at the next housekeeping")
            return set()

    async def _announce_holdings(self, tunnel_ids: set[uuid.UUID]) -> None:
        """Tell the other instances which tunnels this one started or stopped holding, once the connection rows
        are written (so that a peer's database reload agrees with the event)."""
        if self.peers is None or not tunnel_ids:
            return
        gained, lost = self.peers.holdings_changed(tunnel_ids)
        for event in self.peers.holdings_events(gained, lost):
            try:
                await self._broadcast(event)
            except Exception:
                logger.exception("announcing tunnel holdings failed (the peers' reload heals it)")

    async def _heartbeat_instance(self) -> None:
        if self.peers is not None and not self.peer_url:
            from edge.peers import own_peer_url

            self.peer_url = own_peer_url()
            if not self.peer_url and not self._peer_url_warned:
                self._peer_url_warned = True
                logger.warning(
                    "this instance advertises no peer address (set EDGE_PEER_URL): requests reaching other "
                    "instances for tunnels connected here cannot be forwarded to it"
                )
        await self.db(
            ledger.heartbeat_instance,
            self.server_id,
            socket.gethostname(),
            os.getpid(),
            self.started_at,
            self.peer_url,
        )

    async def _reload_peers(self) -> None:
        if self.peers is not None:
            try:
                await self.peers.reload()
            except Exception:
                logger.exception("loading where tunnels are connected failed")

    async def _sweep_loop(self) -> None:
        """Heartbeats for every connection of this process: ping the quiet ones, drop the silent ones."""
        interval = float(settings.CONNECTOR_HEARTBEAT_SECONDS)
        deadline = interval * protocol.HEARTBEAT_MISSES
        period = min(1.0, interval / 4)
        # Connectors PING every interval themselves and our PONGs keep them from declaring us dead, so only a
        # connection quiet for an interval (plus one sweep period, not to race a PING on its way) gets ours: it
        # still hears from us within 1.5 intervals, and the idle traffic is halved (docs/benchmarks.md).
        quiet = interval + period
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for peers in list(self.sessions.values()):
                for session in list(peers.values()):
                    if now - session.last_rx > deadline:
                        await self.unregister(session, f"heartbeat timeout (nothing received for {deadline:.0f} s)")
                        with contextlib.suppress(Exception):
                            await session.close(protocol.CloseCode.GOING_AWAY, "heartbeat timeout")
                    elif now - session.last_rx >= quiet and now - session.last_ping >= interval:
                        session.last_ping = now
                        with contextlib.suppress(Exception):
                            await session.send(protocol.Ping(nonce=next(self._nonce), ts=time.time()))

    async def _instance_loop(self) -> None:
        while True:
            await asyncio.sleep(settings.SERVER_INSTANCE_HEARTBEAT_SECONDS)
            try:
                await self._heartbeat_instance()
                changed = await self.db(
                    ledger.reconcile_lost_instances,
                    self.server_id,
                    _seconds(settings.SERVER_INSTANCE_DEADLINE_SECONDS),
                )
                await self._tunnels_changed(changed)
                self._housekeeping_turns += 1
                if self._housekeeping_turns % REPAIR_EVERY_TURNS == 0:
                    self._repair_due = True  # runs in the flush loop, between flushes (never beside one)
                    self._wake_flush()
                await self._resend_outdated_configs()
                await self._reload_peers()
            except Exception:
                logger.exception("hub housekeeping failed")

    async def _resend_outdated_configs(self) -> None:
        """Config events can be lost between processes; acks by version let us notice and resend. The tunnels
        are read in one query (one per tunnel cost ~13 % of a core at idle with 2,500 tunnels)."""
        for tunnel_id, fresh in (await self.db(_load_tunnels, list(self.sessions))).items():
            self.tunnels[tunnel_id] = fresh
            for session in list(self.sessions.get(tunnel_id, {}).values()):
                if session.acked_version < fresh.config_version:
                    session.sent_version = -1
                    await self.push_config(session)

    async def _layer_loop(self) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        self._layer_channel = await layer.new_channel()
        await layer.group_add(HUB_GROUP, self._layer_channel)
        while True:
            try:
                message = await layer.receive(self._layer_channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("channel layer receive failed; retrying")
                await asyncio.sleep(1)
                continue
            if message.get("origin") == self.server_id:
                continue
            try:
                await self.handle_event(message["event"])
            except Exception:
                logger.exception("hub event failed: %r", message)

    async def _broadcast(self, event: dict[str, Any]) -> None:
        from channels.layers import get_channel_layer

        await get_channel_layer().group_send(HUB_GROUP, {"type": "hub.event", "event": event, "origin": self.server_id})


_gc_tuned = False


def tune_gc() -> None:
    """Once per process, when its hub starts: keep what start-up loaded (Django, the apps: never garbage) out of
    the collector's full passes, and collect the young generation every 50,000 allocations instead of 700, so
    that per-message objects die young instead of being promoted. Measured at 10,000 connections
    (docs/benchmarks.md): full collections over ~1M objects paused the loop 0.4-0.5 s every ~10-15 s at idle."""
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD0, *gc.get_threshold()[1:])


def _slot(session: ConnectorSession) -> tuple[uuid.UUID, uuid.UUID, int]:
    return (session.tunnel_id, session.connector_id, session.conn_index)


def _seconds(value: int):
    import datetime

    return datetime.timedelta(seconds=value)


def _run_quietly(func: Callable[..., Any], **kwargs: Any) -> None:
    try:
        func(**kwargs)
    except Exception:
        logger.exception("enqueueing %s failed", getattr(func, "__name__", func))


def uses_shared_layer() -> bool:
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    return "InMemory" not in backend


# The Origin CA's trust bundle (PEM) sent with every configuration: registered by the certificates app in its
# AppConfig.ready (tunnels does not import it: the product apps' layer contracts).
_origin_ca_source: Callable[[], str] | None = None


def register_origin_ca_source(source: Callable[[], str]) -> None:
    global _origin_ca_source
    _origin_ca_source = source


def origin_ca_bundle() -> str:
    return _origin_ca_source() if _origin_ca_source is not None else ""


def _load_tunnel(tunnel_id: uuid.UUID) -> CachedTunnel | None:
    return _load_tunnels([tunnel_id]).get(tunnel_id)


def _load_tunnels(tunnel_ids: list[uuid.UUID]) -> dict[uuid.UUID, CachedTunnel]:
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


def status_snapshots(org_id: uuid.UUID, tunnel_ids: set[uuid.UUID]) -> list[dict[str, Any]]:
    """JSON-ready status of the tunnels, as the status page and the API show it."""
    from django.db import close_old_connections

    from controlplane.models import Organisation
    from tunnels.live import tunnel_status_json
    from tunnels.models import Tunnel
    from tunnels.selectors import tunnel_health_map

    close_old_connections()
    organisation = Organisation.objects.filter(pk=org_id).first()
    if organisation is None:
        return []
    tunnels = list(Tunnel.objects.for_org(organisation).filter(pk__in=tunnel_ids))
    health = tunnel_health_map(organisation=organisation, tunnels=tunnels)
    return [tunnel_status_json(t, health[t.pk]) for t in tunnels]


_hub: Hub | None = None
_hub_lock = threading.Lock()


def get_hub() -> Hub:
    global _hub
    with _hub_lock:
        if _hub is None:
            _hub = Hub()
        return _hub


def publish(event: dict[str, Any]) -> None:
    """Deliver an event to every hub: this process's directly, the others' through the channel layer.
    Safe to call from any thread (services call it after commit)."""
    hub = _hub
    if hub is not None and hub.loop is not None and not hub.loop.is_closed():
        hub.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(_handle_safely(hub, event)))
    if uses_shared_layer():
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        origin = hub.server_id if hub is not None and hub.loop is not None else "publisher"
        try:
            async_to_sync(get_channel_layer().group_send)(
                HUB_GROUP, {"type": "hub.event", "event": event, "origin": origin}
            )
        except Exception:
            logger.exception("publishing %s to the channel layer failed", event.get("kind"))


async def _handle_safely(hub: Hub, event: dict[str, Any]) -> None:
    try:
        await hub.handle_event(event)
    except Exception:
        logger.exception("hub event failed: %r", event)


async def reset_hub_for_tests() -> None:
    """Stop this process's hub (tests start a fresh one per event loop)."""
    global _hub
    hub, _hub = _hub, None
    if hub is None:
        return
    for task in hub._tasks:
        task.cancel()
    for task in hub._tasks:
        with contextlib.suppress(BaseException):
            await task
    if hub.peers is not None:
        await hub.peers.close()
    # Close each database thread's connection (Django's are per thread), so the test database can be dropped.
    workers = hub._db._max_workers
    barrier = threading.Barrier(workers)

    def close_connection() -> None:
        from django.db import connections

        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        connections.close_all()

    for _ in range(workers):
        hub._db.submit(close_connection)
    hub._db.shutdown(wait=True)
