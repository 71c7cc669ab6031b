"""The edge's half of the data plane: streams multiplexed over one connector connection.

A stream carries one proxied request. Per-stream flow control (connector/protocol.py: INITIAL_WINDOW, WINDOW
frames) bounds what either side buffers: the edge grants the connector more response bytes only after it has
handed the previous ones to the visitor's socket, and sends request bytes only within the connector's grant. A
slow visitor therefore holds back only its own stream, never the connection."""

from __future__ import annotations

import asyncio
import collections
import struct
from typing import TYPE_CHECKING

from connector import protocol

if TYPE_CHECKING:
    from dataplane.sessions import ConnectorSession

GRANT_THRESHOLD = protocol.INITIAL_WINDOW // 2
# A stream whose visitor keeps up gets its receive window doubled at each grant up to this size, so one bulk
# download keeps more bytes in flight than the initial 256 KiB (measured in docs/benchmarks.md, "Edge"). A slow
# visitor never grows it: credit is only granted for bytes its socket has taken.
MAX_STREAM_WINDOW = 1024 * 1024


class StreamReset(Exception):
    """The stream failed: reset by the connector (its code), or `connection_lost` with its connection."""

    def __init__(self, code: int, message: str = "", connection_lost: bool = False) -> None:
        try:
            name = protocol.ResetCode(code).name
        except ValueError:
            name = f"code {code}"
        super().__init__(message or name)
        self.code = code
        self.message = message
        self.connection_lost = connection_lost


class EdgeStream:
    __slots__ = (
        "_ended",
        "_inbound",
        "_recv_window",
        "_send_window",
        "_unacked",
        "_waiter",
        "_window",
        "_window_waiter",
        "id",
        "reset",
        "response",
        "sent",
        "session",
        "ws_messages",
    )

    def __init__(self, session: ConnectorSession, stream_id: int) -> None:
        self.session = session
        self.id = stream_id
        self.response: asyncio.Future[protocol.Response] = session.loop.create_future()
        self._inbound: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future | None = None  # read() waiting for body bytes
        self._ended = False
        self._recv_window = protocol.INITIAL_WINDOW  # what the connector may still send us
        self._unacked = 0  # consumed by the visitor but not yet granted back
        self._window = protocol.INITIAL_WINDOW  # the receive window granted so far (grows for fast visitors)
        self._send_window = protocol.INITIAL_WINDOW
        self.sent = 0  # body bytes handed to the connection (progress of an upload)
        self._window_waiter: asyncio.Future | None = None  # send_body() / send_ws_message() waiting for credit
        self.reset: StreamReset | None = None
        self.ws_messages: asyncio.Queue[protocol.WsMessage] | None = None

    # -- frames from the connector ---------------------------------------------------------------------------

    def on_frame(self, message: protocol.StreamMessage) -> None:
        kind = message.KIND
        if kind == _DATA:
            data = message.data  # type: ignore[union-attr]
            self._recv_window -= len(data)
            if self._recv_window < 0:
                self.fail(protocol.ResetCode.FLOW_CONTROL_ERROR, "connector exceeded the stream window")
                self.session.queue_frame(_reset_frame(self.id, protocol.ResetCode.FLOW_CONTROL_ERROR))
                return
            if data:
                self._inbound.append(data)
            if message.end_stream:  # type: ignore[union-attr]
                self._ended = True
            self._wake()
        elif kind == _RESPONSE:
            if not self.response.done():
                self.response.set_result(message)  # type: ignore[arg-type]
                if message.end_stream:  # type: ignore[union-attr]
                    self._ended = True
                    self._wake()
                if message.status == 101:  # type: ignore[union-attr]
                    self.ws_messages = asyncio.Queue()
        elif kind == _WINDOW:
            self._send_window += message.increment  # type: ignore[union-attr]
            if self._send_window > 0:
                self._wake_sender()
        elif kind == _WS_MESSAGE:
            if self.ws_messages is not None:
                self._recv_window -= len(message.data)  # type: ignore[union-attr]
                self.ws_messages.put_nowait(message)  # type: ignore[arg-type]
        elif kind == _RESET:
            self.fail(message.code, message.message)  # type: ignore[union-attr]

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _wake_sender(self) -> None:
        waiter = self._window_waiter
        if waiter is not None:
            self._window_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def fail(self, code: int, message: str = "", connection_lost: bool = False) -> None:
        if self.reset is None:
            self.reset = StreamReset(code, message, connection_lost)
        if not self.response.done():
            self.response.set_exception(self.reset)
            self.response.exception()  # retrieved: no "never retrieved" warning if nobody awaits it
        self._wake()
        self._wake_sender()
        if self.ws_messages is not None:
            self.ws_messages.put_nowait(protocol.WsMessage.close(self.id, 1011, message[:100]))
        self.session.streams.pop(self.id, None)

    def time_out(self, seconds: float) -> None:
        """No response head within `seconds` (a timer of the edge): reset the stream (TIMEOUT) both ways."""
        if self.reset is None and not self.response.done():
            self.fail(protocol.ResetCode.TIMEOUT, f"No response within {seconds:g} s.")
            self.session.queue_frame(_reset_frame(self.id, protocol.ResetCode.TIMEOUT, "no response head in time"))

    # -- the edge's side -------------------------------------------------------------------------------------

    async def send_body(self, data: bytes, end: bool) -> None:
        """Send request body bytes within the connector's grant, in chunks of at most MAX_DATA_CHUNK."""
        view = memoryview(data)
        session = self.session
        while True:
            if self.reset is not None:
                raise self.reset
            if not view:
                if end:
                    await session.send_frame(_pack_header(_VERSION, _DATA, _END, self.id))
                return
            if self._send_window <= 0:
                self._window_waiter = session.loop.create_future()
                await self._window_waiter
                continue
            size = min(len(view), protocol.MAX_DATA_CHUNK, self._send_window)
            chunk, view = view[:size], view[size:]
            self._send_window -= size
            last = end and not view
            await session.send_frame(_pack_header(_VERSION, _DATA, _END if last else 0, self.id) + chunk)
            self.sent += size
            if last:
                return

    async def send_ws_message(self, data: bytes, binary: bool) -> None:
        """One websocket message of an upgraded stream, within the connector's grant: the window counts message
        bytes as it counts DATA. A message cannot be split, so it may overdraw a window that is still positive
        (the connector accepts it then); past that, wait for WINDOW frames."""
        while self._send_window <= 0:
            if self.reset is not None:
                raise self.reset
            self._window_waiter = self.session.loop.create_future()
            await self._window_waiter
        if self.reset is not None:
            raise self.reset
        self._send_window -= len(data)
        await self.session.send(protocol.WsMessage(self.id, data, binary=binary))
        self.sent += len(data)

    async def read(self) -> bytes | None:
        """The response body bytes received so far (all of them, joined: one write to the visitor for several DATA
        frames), None at its end; raises StreamReset."""
        inbound = self._inbound
        while not inbound:
            if self.reset is not None:
                raise self.reset
            if self._ended:
                self.session.streams.pop(self.id, None)
                return None
            self._waiter = self.session.loop.create_future()
            await self._waiter
        if len(inbound) == 1:
            return inbound.popleft()
        data = b"".join(inbound)
        inbound.clear()
        return data

    @property
    def complete(self) -> bool:
        """The whole body is here (no reset): `take_rest()` hands it over at once."""
        return self._ended and self.reset is None

    def take_rest(self) -> bytes:
        inbound = self._inbound
        body = inbound[0] if len(inbound) == 1 else b"".join(inbound)
        inbound.clear()
        self.session.streams.pop(self.id, None)
        return body

    async def consumed(self, size: int) -> None:
        """The visitor's socket took `size` bytes: let the connector send that much more (in batches of at least
        half a window, so WINDOW frames stay few)."""
        self._unacked += size
        if self._unacked >= GRANT_THRESHOLD and self.reset is None and not self._ended:
            grant, self._unacked = self._unacked, 0
            if self._window < MAX_STREAM_WINDOW:
                bonus = min(grant, MAX_STREAM_WINDOW - self._window)
                self._window += bonus
                grant += bonus
            self._recv_window += grant
            self.session.queue_frame(_pack_header(_VERSION, _WINDOW, 0, self.id) + _U32.pack(grant))

    async def cancel(self, code: int = protocol.ResetCode.CANCEL, message: str = "") -> None:
        if self.reset is None and self.id in self.session.streams:
            self.fail(code, message)
            self.session.queue_frame(_reset_frame(self.id, code, message))


def _reset_frame(stream_id: int, code: int, message: str = "") -> bytes:
    return protocol.encode(protocol.Reset(stream_id, code, message))


_pack_header = protocol.HEADER.pack
_U32 = struct.Struct("!I")
_VERSION = protocol.PROTOCOL_VERSION
_DATA, _RESPONSE, _WINDOW, _WS_MESSAGE, _RESET = (
    int(protocol.Kind.DATA),
    int(protocol.Kind.RESPONSE),
    int(protocol.Kind.WINDOW),
    int(protocol.Kind.WS_MESSAGE),
    int(protocol.Kind.RESET),
)
_END = int(protocol.Flags.END_STREAM)
