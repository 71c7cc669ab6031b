"""Cross-instance forwarding: a request that arrives at instance B for a tunnel whose connectors are connected to
instance A is carried B → A over one persistent websocket per peer (the peer link), and A relays the stream to one
of its connector connections.

Why not the channel layer: a proxied request through any Channels layer is 15-20× slower than a direct socket
(docs/architecture.md, perf-baselines). The layer only carries *where* tunnels are connected, once per change.

* **Where a tunnel is connected** (`PeerDirectory`, one per hub when the channel layer is shared): per tunnel, the
  other instances that hold a connection advertising `streams`. Loaded from the database (open connection rows
  carry their server instance; only instances alive and advertising a peer URL count) when the hub starts and on
  every instance heartbeat, and kept current by `holders` events through the channel layer: after each ledger flush
  an instance announces the tunnels it gained (first carrying connection) or lost (last one closed or draining).
  Events newer than a reload's start are re-applied over its result, and a "lost" event outweighs rows that are
  still open (draining connections) for LOST_STICKY_SECONDS, so a reload cannot undo a fresher event.
  Never a database query per request.
* **The link** (`PeerLink`, B's side): `connector/websocket.py`'s client to `<peer url>/edge/v1/peer`, authenticated
  by `Authorization: EdgePeer <server id> <unix time> <hmac>` (HMAC-SHA256 under a key derived from SECRET_KEY,
  which every instance shares; ±5 minutes). A answers WELCOME (its server id: a restarted instance at the same
  address is recognised and the link dropped), then both sides PING every `heartbeat_interval` and drop a link
  silent for three. Frames are the connector protocol's, several per websocket message (each preceded by its u32
  length: the frames of one event-loop turn go out in one write); B's streams are `edge.streams.EdgeStream`s whose
  session is a `PeerTunnelView`, so `edge/app.py` works unchanged. The REQUEST's first header is the pseudo-header
  `:tunnel` (the tunnel id in hex); a visitor cannot send it (HTTP/1.1 names cannot contain ":").
* **The relay** (`peer_app`, A's side): A opens a stream on a local connector connection for each REQUEST (ids
  remapped, `:tunnel` stripped) and passes every frame through both ways, WINDOW included: flow control stays end
  to end between B's edge and the connector, and A keeps nothing beyond the frames in flight within the windows.
  No local connection that carries streams → RESET REFUSED_STREAM (a 502 for that request: B's directory follows
  events and reloads only, so that a connector's reconnect gap on A does not make B give up on A).
* **Failures**: a lost link fails its streams (502 to visitors; 530 for new requests while no link is up) and
  redials with jittered backoff; a lost connector connection on A resets its relayed streams; an instance no longer
  alive in the database is dropped with its link.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import random
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from django.conf import settings

from connector import protocol
from connector.protocol import HEADER, KNOWN_FLAGS, MAX_FRAME_SIZE, PROTOCOL_VERSION, ResetCode
from connector.websocket import ConnectionClosed, WebSocket, WebSocketError, connect
from edge.streams import EdgeStream

if TYPE_CHECKING:
    from tunnels.hub import ConnectorSession, Hub

logger = logging.getLogger("edge.peers")

PEER_PATH = "/edge/v1/peer"
AUTH_SCHEME = "EdgePeer"
AUTH_MAX_SKEW = 300  # seconds between the dialler's clock and ours
TUNNEL_HEADER = b":tunnel"
PEER_HEARTBEAT_SECONDS = 5.0  # at most; CONNECTOR_HEARTBEAT_SECONDS when shorter
OPEN_TIMEOUT = 5.0
RECONNECT_MAX_SECONDS = 10.0
LINK_HIGH_WATER = 1024 * 1024  # bytes queued on a link's socket before a sender waits for it to drain
STREAM_ID_LIMIT = protocol.MAX_STREAM_ID - 2
EVENT_CHUNK = 1000  # tunnel ids per `holders` event
# A "lost" event outweighs open connection rows for this long (draining connections stay open up to the
# connector's grace period, 30 s by default).
LOST_STICKY_SECONDS = 60.0
# A link message is one frame or a BATCH of them (connector/protocol.py, as on connector connections that advertise
# `batch`): the frames queued in one event-loop turn go out as one websocket message (measured under uvicorn: one
# send per frame cost the relaying instance ~13 % of its CPU, ~7 % batched).

_REQUEST, _DATA, _RESET, _WINDOW, _WS_MESSAGE = (
    int(protocol.Kind.REQUEST),
    int(protocol.Kind.DATA),
    int(protocol.Kind.RESET),
    int(protocol.Kind.WINDOW),
    int(protocol.Kind.WS_MESSAGE),
)
_RESPONSE = int(protocol.Kind.RESPONSE)
_END = int(protocol.Flags.END_STREAM)


# -- the instance's own address -------------------------------------------------------------------------------

_listen_port: int | None = None


def note_server(scope: dict[str, Any]) -> None:
    """Remember the port this process serves on (from the first ASGI scope), for a derived peer URL."""
    global _listen_port
    server = scope.get("server")
    port = server[1] if server and len(server) > 1 else None
    _listen_port = port if isinstance(port, int) and port > 0 else 0


def listen_port_known() -> bool:
    return _listen_port is not None


def own_peer_url() -> str:
    """EDGE_PEER_URL, else ws://<this host's address>:<the port this process serves>; "" while unknown."""
    if settings.EDGE_PEER_URL:
        return settings.EDGE_PEER_URL.rstrip("/")
    if not _listen_port:
        return ""
    try:
        host = socket.gethostbyname(socket.gethostname())
    except OSError:
        host = socket.gethostname()
    return f"ws://{host}:{_listen_port}"


def heartbeat_interval() -> float:
    return float(min(PEER_HEARTBEAT_SECONDS, settings.CONNECTOR_HEARTBEAT_SECONDS))


# -- authentication -------------------------------------------------------------------------------------------


class PeerAuthError(Exception):
    pass


def _peer_key() -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), b"zero-trust edge peer link v1", hashlib.sha256).digest()


def auth_header(server_id: str, now: float | None = None) -> str:
    stamp = int(time.time() if now is None else now)
    signature = hmac.new(_peer_key(), f"{server_id} {stamp}".encode(), hashlib.sha256).hexdigest()
    return f"{AUTH_SCHEME} {server_id} {stamp} {signature}"


def verify_auth(value: str, now: float | None = None) -> str:
    """The dialling instance's server id; raises PeerAuthError with the reason."""
    parts = value.split(" ")
    if len(parts) != 4 or parts[0] != AUTH_SCHEME:
        raise PeerAuthError("missing or malformed EdgePeer authorization")
    _, server_id, stamp, signature = parts
    if not stamp.isdigit():
        raise PeerAuthError("malformed EdgePeer timestamp")
    expected = hmac.new(_peer_key(), f"{server_id} {stamp}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("ascii", "replace")):
        raise PeerAuthError("peer signature refused (instances must share SECRET_KEY)")
    if abs((time.time() if now is None else now) - int(stamp)) > AUTH_MAX_SKEW:
        raise PeerAuthError("peer signature expired (are the instances' clocks in sync?)")
    return server_id


def is_peer_request(scope: dict[str, Any]) -> bool:
    """The peer endpoint is routed by path and authorization scheme, whatever the Host (peers dial an address)."""
    if scope["path"] != PEER_PATH:
        return False
    prefix = AUTH_SCHEME.encode() + b" "
    return any(name == b"authorization" and value.startswith(prefix) for name, value in scope.get("headers", ()))


# -- B's side: the link and the directory ---------------------------------------------------------------------


class PeerTunnelView:
    """What `edge/app.py` sees as a session when the tunnel's connector is on a peer: the link, bound to a tunnel
    (its REQUEST frames carry the `:tunnel` pseudo-header)."""

    __slots__ = ("_tunnel_header", "link", "request_prefix", "tunnel_id")

    def __init__(self, link: PeerLink, tunnel_id: uuid.UUID) -> None:
        self.link = link
        self.tunnel_id = tunnel_id
        self._tunnel_header = (TUNNEL_HEADER, tunnel_id.hex.encode())
        self.request_prefix = (self._tunnel_header,)  # edge/app.py puts it first in the REQUEST frames it builds

    @property
    def streams(self) -> dict[int, EdgeStream]:
        return self.link.streams

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.link.loop

    def queue_frame(self, frame: bytes) -> None:
        self.link.queue_frame(frame)

    async def send_frame(self, frame: bytes) -> None:
        await self.link.send_frame(frame)

    @property
    def carries_streams(self) -> bool:
        return self.link.ready

    def open_stream(self) -> EdgeStream:
        return self.link.open_stream(self)

    async def send(self, message: Any) -> None:
        if type(message) is protocol.Request:
            message = dataclasses.replace(message, headers=[self._tunnel_header, *message.headers])
        await self.link.send(message)

    def spawn(self, coroutine: Any) -> None:
        self.link.spawn(coroutine)


class PeerLink:
    """B's persistent websocket to one peer instance, redialled with backoff until the peer is gone."""

    def __init__(self, directory: PeerDirectory, server_id: str, url: str) -> None:
        self.directory = directory
        self.server_id = server_id
        self.url = url
        self.ws: WebSocket | None = None
        self.ready = False
        self.stopped = False
        self.streams: dict[int, EdgeStream] = {}
        self.next_stream_id = 1
        self.background: set[asyncio.Task] = set()
        self.last_rx = time.monotonic()
        self.connects = 0
        self._views: dict[uuid.UUID, PeerTunnelView] = {}
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self, reason: str) -> None:
        self.stopped = True
        self._down(reason)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    def view(self, tunnel_id: uuid.UUID) -> PeerTunnelView:
        view = self._views.get(tunnel_id)
        if view is None:
            if len(self._views) > 10_000:
                self._views.clear()
            view = self._views[tunnel_id] = PeerTunnelView(self, tunnel_id)
        return view

    # -- streams ---------------------------------------------------------------------------------------------

    def open_stream(self, view: PeerTunnelView) -> EdgeStream:
        stream = EdgeStream(view, self.next_stream_id)  # type: ignore[arg-type]
        self.next_stream_id += 2
        self.streams[stream.id] = stream
        if not self.ready:
            stream.fail(ResetCode.REFUSED_STREAM, f"the link to edge instance {self.server_id} is down")
        elif self.next_stream_id >= STREAM_ID_LIMIT:
            self.ready = False  # ids are never reused on a connection: a fresh one once these streams are done
            self.spawn(self._recycle())
        return stream

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self.directory.hub.loop
        assert loop is not None
        return loop

    async def send(self, message: Any) -> None:
        await self.send_frame(protocol.encode(message))

    def queue_frame(self, frame: bytes) -> None:
        if self.ws is None:
            return  # the link is down: its streams were failed, as a lost connector connection's are
        self._out.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    async def send_frame(self, frame: bytes) -> None:
        """Queue a frame (sent with the others of this event-loop turn); waits while the link's socket is full."""
        self.queue_frame(frame)
        ws = self.ws
        if ws is not None and ws.buffered > LINK_HIGH_WATER:
            with contextlib.suppress(ConnectionClosed, OSError):
                await ws.drain()

    def _flush(self) -> None:
        """Frames queued during one event-loop turn go out in one message (one write)."""
        self._flush_scheduled = False
        out, self._out = self._out, []
        ws = self.ws
        if out and ws is not None:
            with contextlib.suppress(ConnectionClosed):
                ws.send_nowait(protocol.encode_batches(out))

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def fail_streams(self, reason: str) -> None:
        for stream in list(self.streams.values()):
            stream.fail(ResetCode.INTERNAL_ERROR, reason, connection_lost=True)  # a safe request may be retried
        self.streams.clear()

    # -- the connection --------------------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self.stopped:
            try:
                ws = await connect(
                    self.url + PEER_PATH,
                    headers=[("Authorization", auth_header(self.directory.hub.server_id))],
                    max_message_size=MAX_FRAME_SIZE,
                    open_timeout=OPEN_TIMEOUT,
                )
            except (WebSocketError, OSError) as exc:
                failures += 1
                logger.log(
                    logging.WARNING if failures % 30 == 1 else logging.DEBUG,
                    "peer link to %s (%s) failed (attempt %d): %s",
                    self.server_id,
                    self.url,
                    failures,
                    exc,
                )
                await asyncio.sleep(_backoff(failures))
                continue
            reason = "closed"
            try:
                interval = await self._handshake(ws)
                failures = 0
                self.connects += 1
                self.ws, self.ready, self.last_rx = ws, True, time.monotonic()
                logger.info("peer link to %s (%s) is up", self.server_id, self.url)
                reason = await self._serve(ws, interval)
            except _Stale as exc:
                reason = str(exc)
                logger.warning("peer link to %s (%s): %s", self.server_id, self.url, reason)
                ws.abort()
                self.directory.drop_peer(self.server_id)
                return
            except (ConnectionClosed, WebSocketError, OSError, protocol.ProtocolError, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
            except Exception as exc:  # a bug must not end the link for good
                logger.exception("peer link to %s failed", self.server_id)
                reason = f"internal error: {exc}"
            finally:
                ws.abort()
                self._down(f"the link to edge instance {self.server_id} was lost: {reason}")
            if not self.stopped:
                logger.info("peer link to %s (%s) lost: %s", self.server_id, self.url, reason)
                failures += 1
                await asyncio.sleep(_backoff(failures))

    def _down(self, reason: str) -> None:
        self.ready = False
        ws, self.ws = self.ws, None
        self._out = []
        if ws is not None:
            ws.abort()
        self.fail_streams(reason)

    async def _handshake(self, ws: WebSocket) -> float:
        """Until WELCOME (ERROR frames before it say why the peer refuses us)."""
        deadline = time.monotonic() + OPEN_TIMEOUT
        refusal = ""
        while True:
            try:
                data = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
            except ConnectionClosed as exc:
                raise WebSocketError(refusal or f"refused: {exc}") from None
            if isinstance(data, str):
                raise protocol.ProtocolError("text message on the peer link")
            frames = list(protocol.split_frames(data))
            if len(frames) != 1:
                raise protocol.ProtocolError("the peer's first messages must hold one frame each")
            message = protocol.decode(frames[0])
            if isinstance(message, protocol.Error):
                refusal = f"refused by the peer: {message.message}"
                logger.warning("peer link to %s (%s) %s", self.server_id, self.url, refusal)
            elif isinstance(message, protocol.Welcome):
                if message.server_id != self.server_id:
                    raise _Stale(f"the address now serves instance {message.server_id}: {self.server_id} is gone")
                return message.heartbeat_interval
            else:
                raise protocol.ProtocolError(f"expected WELCOME, got {type(message).__name__}")

    async def _serve(self, ws: WebSocket, interval: float) -> str:
        heartbeat = asyncio.ensure_future(self._heartbeat(ws, interval))
        streams = self.streams
        try:
            while True:
                data = await ws.recv()
                self.last_rx = time.monotonic()
                if isinstance(data, str):
                    raise protocol.ProtocolError("text message on the peer link")
                for message in protocol.decode_many(data):
                    if message.KIND >= 16:
                        stream = streams.get(message.stream_id)  # type: ignore[union-attr]
                        if stream is not None:  # unknown or finished streams: dropped, as in HTTP/2
                            stream.on_frame(message)  # type: ignore[arg-type]
                    elif isinstance(message, protocol.Ping):
                        await self.send(protocol.Pong(nonce=message.nonce, ts=message.ts))
                    elif isinstance(message, protocol.Drain):
                        self.ready = False  # the peer is going away: finish in-flight streams, open none
                    elif isinstance(message, protocol.Error):
                        logger.warning("peer %s reports %s: %s", self.server_id, message.code, message.message)
                    elif not isinstance(message, protocol.Pong):
                        raise protocol.ProtocolError(f"unexpected {type(message).__name__} on the peer link")
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, ws: WebSocket, interval: float) -> None:
        nonce = 0
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - self.last_rx > interval * protocol.HEARTBEAT_MISSES:
                logger.warning("peer link to %s: nothing received for %.0f s", self.server_id, interval * 3)
                ws.abort("heartbeat timeout")
                return
            nonce += 1
            await self.send(protocol.Ping(nonce=nonce, ts=time.time()))

    async def _recycle(self) -> None:
        deadline = time.monotonic() + settings.EDGE_RESPONSE_TIMEOUT_SECONDS
        while self.streams and time.monotonic() < deadline:
            await asyncio.sleep(1)
        self.next_stream_id = 1
        if self.ws is not None:
            self.ws.abort("stream ids exhausted: reconnecting")


class _Stale(Exception):
    pass


def _backoff(failures: int) -> float:
    return random.uniform(0.05, min(RECONNECT_MAX_SECONDS, 0.25 * 2 ** min(failures, 10)))  # noqa: S311


class PeerDirectory:
    """Which other instances hold which tunnels, and the links to them (one per hub, production only)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.holders: dict[uuid.UUID, set[str]] = {}
        self.urls: dict[str, str] = {}
        self.links: dict[str, PeerLink] = {}
        self.announced: set[uuid.UUID] = set()  # tunnels this instance told the others it holds
        self._turns: dict[uuid.UUID, int] = {}
        # (server, tunnel) -> (monotonic time, held): events re-applied over a reload that began before them.
        self._recent: dict[tuple[str, uuid.UUID], tuple[float, bool]] = {}

    # -- the request path ------------------------------------------------------------------------------------

    def pick(self, tunnel_id: uuid.UUID) -> PeerTunnelView | None:
        holders = self.holders.get(tunnel_id)
        if not holders:
            return None
        links = [link for server in holders if (link := self.links.get(server)) is not None and link.ready]
        if not links:
            return None
        if len(links) == 1:
            return links[0].view(tunnel_id)
        turn = self._turns.get(tunnel_id, 0)
        self._turns[tunnel_id] = turn + 1
        links.sort(key=lambda link: link.server_id)
        return links[turn % len(links)].view(tunnel_id)

    # -- what the others hold --------------------------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        server = str(event.get("server") or "")
        if not server or server == self.hub.server_id:
            return
        url = str(event.get("url") or "")
        if url:
            self.urls[server] = url
        now = time.monotonic()
        for raw in event.get("gained") or ():
            tunnel_id = uuid.UUID(raw)
            self.holders.setdefault(tunnel_id, set()).add(server)
            self._recent[(server, tunnel_id)] = (now, True)
        for raw in event.get("lost") or ():
            tunnel_id = uuid.UUID(raw)
            self._discard(tunnel_id, server)
            self._recent[(server, tunnel_id)] = (now, False)
        if event.get("gained"):
            self._ensure_link(server)

    def _discard(self, tunnel_id: uuid.UUID, server: str) -> None:
        holders = self.holders.get(tunnel_id)
        if holders is not None:
            holders.discard(server)
            if not holders:
                del self.holders[tunnel_id]
                self._turns.pop(tunnel_id, None)

    async def reload(self) -> None:
        """The safety net: replace what we know with the database's view (alive instances, open connections),
        keeping the events that arrived since the query began."""
        from tunnels.ledger import load_peer_holdings

        started = time.monotonic()
        urls, holders = await self.hub.db(
            load_peer_holdings, self.hub.server_id, _seconds(settings.SERVER_INSTANCE_DEADLINE_SECONDS)
        )
        now = time.monotonic()
        for key, (at, held) in list(self._recent.items()):
            server, tunnel_id = key
            servers = holders.get(tunnel_id)
            if held:
                if at < started:
                    del self._recent[key]  # rows are written before the event: the query saw them
                    continue
                if server not in urls and server in self.urls:
                    urls[server] = self.urls[server]  # announced itself since the query began
                if server in urls:
                    holders.setdefault(tunnel_id, set()).add(server)
            elif servers is None or server not in servers or now - at > LOST_STICKY_SECONDS:
                del self._recent[key]  # the database agrees (or the event is too old to trust over it)
            else:
                # The rows are still open: draining connections, or a close not flushed yet. The event wins.
                servers.discard(server)
                if not servers:
                    del holders[tunnel_id]
        self.urls, self.holders = urls, holders
        for server in [server for server in self.links if server not in urls]:
            logger.info("edge instance %s is no longer alive: its peer link is closed", server)
            await self.links.pop(server).stop("the instance is no longer alive")
        for server in {server for servers in holders.values() for server in servers}:
            self._ensure_link(server)

    def drop_peer(self, server: str) -> None:
        """A link found another instance at the peer's address: the peer is gone."""
        self.urls.pop(server, None)
        self.links.pop(server, None)
        for tunnel_id in [t for t, servers in self.holders.items() if server in servers]:
            self._discard(tunnel_id, server)

    def _ensure_link(self, server: str) -> None:
        link = self.links.get(server)
        url = self.urls.get(server)
        if link is None and url:
            link = self.links[server] = PeerLink(self, server, url)
            link.start()

    async def close(self) -> None:
        links, self.links = self.links, {}
        for link in links.values():
            await link.stop("the hub stopped")

    # -- what we hold ----------------------------------------------------------------------------------------

    def holdings_changed(self, tunnel_ids: set[uuid.UUID]) -> tuple[list[str], list[str]]:
        """Tunnels among `tunnel_ids` this instance started or stopped holding since it last said so."""
        gained, lost = [], []
        sessions = self.hub.sessions
        for tunnel_id in tunnel_ids:
            held = any(session.carries_streams for session in sessions.get(tunnel_id, {}).values())
            if held and tunnel_id not in self.announced:
                self.announced.add(tunnel_id)
                gained.append(tunnel_id.hex)
            elif not held and tunnel_id in self.announced:
                self.announced.discard(tunnel_id)
                lost.append(tunnel_id.hex)
        return gained, lost

    def holdings_events(self, gained: list[str], lost: list[str]) -> list[dict[str, Any]]:
        events = []
        url = self.hub.peer_url
        for start in range(0, max(len(gained), len(lost)), EVENT_CHUNK):
            events.append(
                {
                    "kind": "holders",
                    "server": self.hub.server_id,
                    "url": url,
                    "gained": gained[start : start + EVENT_CHUNK],
                    "lost": lost[start : start + EVENT_CHUNK],
                }
            )
        return events


def _seconds(value: int):
    import datetime

    return datetime.timedelta(seconds=value)


# -- A's side: the relay --------------------------------------------------------------------------------------


class _Outbox:
    """Frames for one connector connection, sent in order by one task: the link's reader never waits for a
    connector's socket, so a slow connection holds back only its own streams (what waits here is bounded by the
    streams' windows)."""

    __slots__ = ("frames", "session", "task")

    def __init__(self, session: ConnectorSession) -> None:
        self.session = session
        self.frames: collections.deque[bytes] = collections.deque()
        self.task: asyncio.Task | None = None

    def push(self, frame: bytes) -> None:
        self.frames.append(frame)
        if self.task is None:
            self.task = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        frames = self.frames
        try:
            while frames and not self.session.closed:
                await self.session.send_bytes(frames.popleft())
        except Exception:
            logger.debug("relaying to connector connection %s failed", self.session.connection_id, exc_info=True)
        finally:
            if self.session.closed:
                frames.clear()
            self.task = None


class RelayStream:
    """A stream relayed for a peer: registered in the local connector session's streams under a local id, in the
    relay under the peer's id. Frames pass through with the id rewritten; nothing is buffered beyond the windows."""

    __slots__ = ("edge_ended", "edge_id", "local_id", "origin_ended", "outbox", "relay", "session", "websocket")

    def __init__(self, relay: PeerRelay, edge_id: int, outbox: _Outbox, local_id: int, websocket: bool) -> None:
        self.relay = relay
        self.edge_id = edge_id
        self.outbox = outbox
        self.session = outbox.session
        self.local_id = local_id
        self.websocket = websocket
        self.edge_ended = False
        self.origin_ended = False

    @property
    def id(self) -> int:
        return self.local_id

    # connector → peer (called by the connector connection's reader through dispatch_stream_frame)
    def on_frame(self, message: Any) -> None:
        kind = message.KIND
        flags = message.flags()
        self.relay.push(HEADER.pack(PROTOCOL_VERSION, kind, flags, self.edge_id) + message.payload())
        if kind == _RESET:
            self._finish()
        elif flags & _END and kind in (_RESPONSE, _DATA, _WS_MESSAGE):
            self.origin_ended = True
            # An HTTP stream is over once the response is (the connector forgets it then, too); a websocket once
            # both sides closed (the edge also resets it when it is done).
            if not self.websocket or self.edge_ended:
                self._finish()

    def fail(self, code: int, message: str = "", connection_lost: bool = False) -> None:
        """The connector connection was lost (hub.unregister → fail_streams): the peer's stream is reset (its
        edge decides whether the request may be retried; it only sees the RESET)."""
        self.relay.push(protocol.encode(protocol.Reset(self.edge_id, code, message)))
        self._finish()

    # peer → connector
    def from_edge(self, kind: int, flags: int, frame: memoryview) -> None:
        if kind == _RESET:
            self._finish()
        elif flags & _END and kind in (_DATA, _WS_MESSAGE):
            self.edge_ended = True
            if self.websocket and self.origin_ended:
                self._finish()
        self.outbox.push(HEADER.pack(PROTOCOL_VERSION, kind, flags, self.local_id) + frame[8:])

    def _finish(self) -> None:
        self.session.streams.pop(self.local_id, None)
        self.relay.streams.pop(self.edge_id, None)


class PeerRelay:
    """A's side of one peer link: the streams it relays, and its ordered outgoing queue."""

    def __init__(self, hub: Hub, send_bytes: Any, peer_id: str) -> None:
        self.hub = hub
        self.peer_id = peer_id
        self._send_bytes = send_bytes
        self.streams: dict[int, RelayStream] = {}
        self.outboxes: dict[uuid.UUID, _Outbox] = {}  # connector connection id -> its outbox
        self.last_stream_id = 0
        self.last_rx = time.monotonic()
        self.closed = False
        self.relayed = 0
        self._out: collections.deque[bytes] = collections.deque()
        self._writer: asyncio.Task | None = None

    def push(self, frame: bytes) -> None:
        """Queue a frame for the peer; one writer task sends them in order (ASGI sends are awaited)."""
        if self.closed:
            return
        self._out.append(frame)
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        """Everything queued meanwhile goes out in as few messages as fit (one per turn under load)."""
        out = self._out
        try:
            while out:
                frames = list(out)
                out.clear()
                for message in protocol.encode_batches(frames):
                    await self._send_bytes(message)
        except Exception:
            logger.debug("writing to peer %s failed", self.peer_id, exc_info=True)
            out.clear()
        finally:
            self._writer = None

    def on_message(self, message: bytes) -> None:
        """A message from the peer; never waits (frames for connectors go to their outboxes)."""
        if len(message) > MAX_FRAME_SIZE:
            raise protocol.ProtocolError(f"message of {len(message)} bytes is too large")
        for frame in protocol.split_frames(message):
            self.on_frame(frame)

    def on_frame(self, frame: memoryview) -> None:
        version, kind, flags, stream_id = HEADER.unpack_from(frame)
        if version != PROTOCOL_VERSION:
            raise protocol.ProtocolError(f"unsupported protocol version {version}")
        if kind == _REQUEST:
            self._open(frame)
        elif kind in (_DATA, _RESET, _WINDOW, _WS_MESSAGE):
            if stream_id == 0 or flags & ~KNOWN_FLAGS:
                raise protocol.ProtocolError("malformed stream frame")
            relay = self.streams.get(stream_id)
            if relay is not None:  # unknown or finished streams: dropped, as in HTTP/2
                relay.from_edge(kind, flags, frame)
        else:
            message = protocol.decode(frame)
            if isinstance(message, protocol.Ping):
                self.push(protocol.encode(protocol.Pong(nonce=message.nonce, ts=message.ts)))
            elif isinstance(message, protocol.Error):
                logger.warning("peer %s reports %s: %s", self.peer_id, message.code, message.message)
            elif not isinstance(message, protocol.Pong):
                raise protocol.ProtocolError(f"unexpected {type(message).__name__} on the peer link")

    def _open(self, frame: memoryview) -> None:
        request = protocol.decode(frame)
        assert isinstance(request, protocol.Request)
        edge_id = request.stream_id
        if not edge_id & 1 or edge_id <= self.last_stream_id:
            raise protocol.ProtocolError(f"REQUEST on stream {edge_id}: ids must be odd and increasing")
        self.last_stream_id = edge_id
        headers = request.headers
        tunnel_id = None
        if headers and headers[0][0] == TUNNEL_HEADER:
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                tunnel_id = uuid.UUID(headers[0][1].decode("ascii"))
        if tunnel_id is None:
            self.push(protocol.encode(protocol.Reset(edge_id, ResetCode.PROTOCOL_ERROR, "REQUEST without :tunnel")))
            return
        session = self.hub.pick_local_session(tunnel_id)
        if session is None:
            reason = f"no connector of this tunnel is connected to edge instance {self.hub.server_id}"
            self.push(protocol.encode(protocol.Reset(edge_id, ResetCode.REFUSED_STREAM, reason)))
            return
        outbox = self.outboxes.get(session.connection_id)
        if outbox is None:
            if len(self.outboxes) > 256:
                for key in [key for key, box in self.outboxes.items() if box.session.closed and box.task is None]:
                    del self.outboxes[key]
            outbox = self.outboxes[session.connection_id] = _Outbox(session)
        local_id = session.next_stream_id
        session.next_stream_id += 2
        relay = RelayStream(self, edge_id, outbox, local_id, request.websocket)
        relay.edge_ended = request.end_stream
        session.streams[local_id] = relay
        self.streams[edge_id] = relay
        self.relayed += 1
        outbox.push(protocol.encode(dataclasses.replace(request, stream_id=local_id, headers=headers[1:])))

    def close(self, reason: str) -> None:
        """The link is gone: cancel every relayed stream at its connector."""
        self.closed = True
        self._out.clear()
        for relay in list(self.streams.values()):
            relay._finish()
            if not relay.session.closed:
                relay.outbox.push(protocol.encode(protocol.Reset(relay.local_id, ResetCode.CANCEL, reason)))
        self.streams.clear()


async def peer_app(scope: dict[str, Any], receive, send) -> None:
    """A's end of a peer link: authenticate, WELCOME, then relay streams until the link closes."""
    from tunnels.connector_socket import WebSocket
    from tunnels.hub import get_hub

    message = await receive()
    if message["type"] != "websocket.connect":
        return
    hub = get_hub()
    await hub.ensure_started()
    await send({"type": "websocket.accept"})
    sock = WebSocket(receive, send)
    auth = ""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            auth = value.decode("latin-1")
            break
    try:
        peer_id = verify_auth(auth)
    except PeerAuthError as exc:
        client = (scope.get("client") or ("?", 0))[0]
        logger.warning("peer link from %s refused: %s", client, exc)
        # daphne drops close reasons: say it in an ERROR frame first.
        with contextlib.suppress(Exception):
            error = protocol.Error(code=str(int(protocol.CloseCode.TOKEN_REFUSED)), message=str(exc))
            await sock.send_bytes(protocol.encode_batches([protocol.encode(error)])[0])
        await sock.close(protocol.CloseCode.TOKEN_REFUSED, str(exc))
        return
    interval = heartbeat_interval()
    relay = PeerRelay(hub, sock.send_bytes, peer_id)
    hub.peer_relays.add(relay)
    relay.push(
        protocol.encode(
            protocol.Welcome(
                connection_id=str(uuid.uuid4()),
                server_id=hub.server_id,
                heartbeat_interval=interval,
                location=hub.location,
            )
        )
    )
    logger.info("peer link from %s accepted", peer_id)
    reason = "closed by the peer"

    async def read() -> str:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return f"closed by the peer (websocket code {event.get('code', 1006)})"
            if event["type"] != "websocket.receive":
                continue
            data = event.get("bytes")
            if data is None:
                raise protocol.ProtocolError("text messages are not part of the protocol")
            relay.last_rx = time.monotonic()
            relay.on_message(data)

    async def watch() -> str:
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - relay.last_rx > interval * protocol.HEARTBEAT_MISSES:
                return f"heartbeat timeout (nothing received for {interval * protocol.HEARTBEAT_MISSES:.0f} s)"

    reader, watchdog = asyncio.ensure_future(read()), asyncio.ensure_future(watch())
    try:
        done, _ = await asyncio.wait({reader, watchdog}, return_when=asyncio.FIRST_COMPLETED)
        task = done.pop()
        try:
            reason = task.result()
        except protocol.ProtocolError as exc:
            reason = f"protocol violation: {exc.reason}"
            await sock.close(exc.close_code, exc.reason)
        except Exception:
            logger.exception("peer link from %s failed", peer_id)
            reason = "internal error"
            await sock.close(protocol.CloseCode.INTERNAL_ERROR, reason)
        if task is watchdog:
            await sock.close(protocol.CloseCode.GOING_AWAY, "heartbeat timeout")
    finally:
        for task in (reader, watchdog):
            task.cancel()
        relay.close(f"the edge instance's link was lost: {reason}")
        hub.peer_relays.discard(relay)
        logger.info("peer link from %s closed: %s", peer_id, reason)
