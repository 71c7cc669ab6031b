"""The edge's half of the data plane: streams multiplexed over one connector connection.

A stream carries one proxied request. Per-stream flow control (connector/protocol.py: INITIAL_WINDOW, WINDOW
frames) bounds what either side buffers: the edge grants the connector more response bytes only after it has
handed the previous ones to the visitor's socket, and sends request bytes only within the connector's grant. A
slow visitor therefore holds back only its own stream, never the connection."""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING

from connector import protocol

if TYPE_CHECKING:
    from tunnels.hub import ConnectorSession

GRANT_THRESHOLD = protocol.INITIAL_WINDOW // 2


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
        "_readable",
        "_recv_window",
        "_send_window",
        "_unacked",
        "_window_open",
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
        self.response: asyncio.Future[protocol.Response] = asyncio.get_running_loop().create_future()
        self._inbound: collections.deque[bytes] = collections.deque()
        self._readable = asyncio.Event()
        self._ended = False
        self._recv_window = protocol.INITIAL_WINDOW  # what the connector may still send us
        self._unacked = 0  # consumed by the visitor but not yet granted back
        self._send_window = protocol.INITIAL_WINDOW
        self.sent = 0  # body bytes handed to the connection (progress of an upload)
        self._window_open = asyncio.Event()
        self._window_open.set()
        self.reset: StreamReset | None = None
        self.ws_messages: asyncio.Queue[protocol.WsMessage] | None = None

    # -- frames from the connector ---------------------------------------------------------------------------

    def on_frame(self, message: protocol.StreamMessage) -> None:
        if isinstance(message, protocol.Data):
            self._recv_window -= len(message.data)
            if self._recv_window < 0:
                self.fail(protocol.ResetCode.FLOW_CONTROL_ERROR, "connector exceeded the stream window")
                self.session.spawn(self.session.send(protocol.Reset(self.id, protocol.ResetCode.FLOW_CONTROL_ERROR)))
                return
            if message.data:
                self._inbound.append(message.data)
            if message.end_stream:
                self._ended = True
            self._readable.set()
        elif isinstance(message, protocol.Response):
            if not self.response.done():
                self.response.set_result(message)
                if message.end_stream:
                    self._ended = True
                    self._readable.set()
                if message.status == 101:
                    self.ws_messages = asyncio.Queue()
        elif isinstance(message, protocol.Window):
            self._send_window += message.increment
            if self._send_window > 0:
                self._window_open.set()
        elif isinstance(message, protocol.WsMessage):
            if self.ws_messages is not None:
                self._recv_window -= len(message.data)
                self.ws_messages.put_nowait(message)
        elif isinstance(message, protocol.Reset):
            self.fail(message.code, message.message)

    def fail(self, code: int, message: str = "", connection_lost: bool = False) -> None:
        if self.reset is None:
            self.reset = StreamReset(code, message, connection_lost)
        if not self.response.done():
            self.response.set_exception(self.reset)
            self.response.exception()  # retrieved: no "never retrieved" warning if nobody awaits it
        self._readable.set()
        self._window_open.set()
        if self.ws_messages is not None:
            self.ws_messages.put_nowait(protocol.WsMessage.close(self.id, 1011, message[:100]))
        self.session.streams.pop(self.id, None)

    # -- the edge's side -------------------------------------------------------------------------------------

    async def send_body(self, data: bytes, end: bool) -> None:
        """Send request body bytes within the connector's grant, in chunks of at most MAX_DATA_CHUNK."""
        view = memoryview(data)
        while True:
            if self.reset is not None:
                raise self.reset
            if not view:
                if end:
                    await self.session.send(protocol.Data(self.id, b"", end_stream=True))
                return
            if self._send_window <= 0:
                self._window_open.clear()
                await self._window_open.wait()
                continue
            size = min(len(view), protocol.MAX_DATA_CHUNK, self._send_window)
            chunk, view = bytes(view[:size]), view[size:]
            self._send_window -= size
            await self.session.send(protocol.Data(self.id, chunk, end_stream=end and not view))
            self.sent += size
            if end and not view:
                return

    async def send_ws_message(self, data: bytes, binary: bool) -> None:
        """One websocket message of an upgraded stream, within the connector's grant: the window counts message
        bytes as it counts DATA. A message cannot be split, so it may overdraw a window that is still positive
        (the connector accepts it then); past that, wait for WINDOW frames."""
        while self._send_window <= 0:
            if self.reset is not None:
                raise self.reset
            self._window_open.clear()
            await self._window_open.wait()
        if self.reset is not None:
            raise self.reset
        self._send_window -= len(data)
        await self.session.send(protocol.WsMessage(self.id, data, binary=binary))
        self.sent += len(data)

    async def read(self) -> bytes | None:
        """The next chunk of the response body, None at its end; raises StreamReset."""
        while not self._inbound:
            if self.reset is not None:
                raise self.reset
            if self._ended:
                self.session.streams.pop(self.id, None)
                return None
            self._readable.clear()
            await self._readable.wait()
        return self._inbound.popleft()

    async def consumed(self, size: int) -> None:
        """The visitor's socket took `size` bytes: let the connector send that much more (in batches of at least
        half a window, so WINDOW frames stay few)."""
        self._unacked += size
        if self._unacked >= GRANT_THRESHOLD and self.reset is None and not self._ended:
            grant, self._unacked = self._unacked, 0
            self._recv_window += grant
            await self.session.send(protocol.Window(self.id, grant))

    async def cancel(self, code: int = protocol.ResetCode.CANCEL, message: str = "") -> None:
        if self.reset is None and self.id in self.session.streams:
            self.fail(code, message)
            await self.session.send(protocol.Reset(self.id, code, message))
