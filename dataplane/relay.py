"""Cross-instance forwarding, A's side (dataplane/peers.py explains the whole): the endpoint of a peer link
(`peer_app`, `/edge/v1/peer`) and the relay that opens a stream on a local connector connection for each REQUEST
another instance forwards (ids remapped, `:tunnel` stripped) and passes every frame through both ways, WINDOW
included, so that flow control stays end to end between that instance's edge and the connector."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from connector import protocol
from connector.protocol import HEADER, KNOWN_FLAGS, MAX_FRAME_SIZE, PROTOCOL_VERSION, ResetCode
from dataplane.peers import TUNNEL_HEADER, PeerAuthError, heartbeat_interval, verify_auth

if TYPE_CHECKING:
    from dataplane.hub import Hub
    from dataplane.sessions import ConnectorSession

logger = logging.getLogger("edge.peers")

_REQUEST, _DATA, _RESET, _WINDOW, _WS_MESSAGE = (
    int(protocol.Kind.REQUEST),
    int(protocol.Kind.DATA),
    int(protocol.Kind.RESET),
    int(protocol.Kind.WINDOW),
    int(protocol.Kind.WS_MESSAGE),
)
_RESPONSE = int(protocol.Kind.RESPONSE)
_END = int(protocol.Flags.END_STREAM)


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
    from dataplane.hub import get_hub
    from tunnels.websocket import WebSocket

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
