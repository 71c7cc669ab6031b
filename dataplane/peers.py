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
  length: the frames of one event-loop turn go out in one write); B's streams are `dataplane.streams.EdgeStream`s
  whose session is a `PeerSession` (dataplane/session.py), so `edge/app.py` works unchanged. The REQUEST's first
  header is the pseudo-header `:tunnel` (the tunnel id in hex); a visitor cannot send it (HTTP/1.1 names cannot
  contain ":").
* **The relay** (`peer_app`, A's side, dataplane/relay.py): A opens a stream on a local connector connection for
  each REQUEST (ids remapped, `:tunnel` stripped) and passes every frame through both ways, WINDOW included: flow
  control stays end to end between B's edge and the connector, and A keeps nothing beyond the frames in flight
  within the windows. No local connection that carries streams → RESET REFUSED_STREAM (a 502 for that request: B's
  directory follows events and reloads only, so that a connector's reconnect gap on A does not make B give up on A).
* **Failures**: a lost link fails its streams (502 to visitors; 530 for new requests while no link is up) and
  redials with jittered backoff; a lost connector connection on A resets its relayed streams; an instance no longer
  alive in the database is dropped with its link.
"""

from __future__ import annotations

import asyncio
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
from connector.protocol import MAX_FRAME_SIZE, ResetCode
from connector.websocket import ConnectionClosed, WebSocket, WebSocketError, connect
from dataplane.streams import EdgeStream

if TYPE_CHECKING:
    from dataplane.hub import Hub

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


# What a peer session speaks: the link relays data-plane streams, and frames each turn's frames in one BATCH.
PEER_FEATURES = frozenset({protocol.FEATURE_STREAMS, protocol.FEATURE_BATCH})


class PeerSession:
    """A tunnel held by another instance, as a `Session` (dataplane/session.py): the link to that instance, bound
    to the tunnel (its REQUEST frames carry the `:tunnel` pseudo-header). One per (link, tunnel), kept by the link."""

    __slots__ = ("_tunnel_header", "link", "request_prefix", "tunnel_id")

    def __init__(self, link: PeerLink, tunnel_id: uuid.UUID) -> None:
        self.link = link
        self.tunnel_id = tunnel_id
        self._tunnel_header = (TUNNEL_HEADER, tunnel_id.hex.encode())
        # edge/app.py puts it first in the REQUEST frames it builds
        self.request_prefix: tuple[tuple[bytes, bytes], ...] = (self._tunnel_header,)

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

    @property
    def draining(self) -> bool:
        return not self.link.ready

    def advertises(self, feature: str) -> bool:
        return feature in PEER_FEATURES

    def open_stream(self) -> EdgeStream:
        return self.link.open_stream(self)

    async def close(self, code: int, reason: str) -> None:
        """Reset this tunnel's streams on the link (CANCEL, with `reason`; `code` names a connection's close and
        has no meaning here): the link stays up, shared by the peer's other tunnels."""
        for stream in [stream for stream in self.link.streams.values() if stream.session is self]:
            await stream.cancel(ResetCode.CANCEL, reason)

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
        self._views: dict[uuid.UUID, PeerSession] = {}
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

    def view(self, tunnel_id: uuid.UUID) -> PeerSession:
        view = self._views.get(tunnel_id)
        if view is None:
            if len(self._views) > 10_000:
                self._views.clear()
            view = self._views[tunnel_id] = PeerSession(self, tunnel_id)
        return view

    # -- streams ---------------------------------------------------------------------------------------------

    def open_stream(self, view: PeerSession) -> EdgeStream:
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

    def pick(self, tunnel_id: uuid.UUID) -> PeerSession | None:
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
