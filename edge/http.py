"""uvicorn's httptools protocol with corked writes: what one event-loop turn writes to a visitor's connection goes
out in one send().

uvicorn writes a response's head as soon as `http.response.start` arrives and its body on the next message: two
send() calls, two TCP segments, for every small response. py-spy under wrk showed those writes as the largest
single cost of the edge process (each send on loopback also runs the receiver's side of TCP). The edge sends the
head and a small body in the same turn, so they merge here. Select it with uvicorn's
``--http edge.http:HttpToolsProtocol`` (docs/benchmarks.md, "Edge", has the figures).

Everything else is uvicorn's: parsing, keep-alive, flow control (pause_writing comes from the real transport, at
most one turn later), websocket upgrades (handed the real transport).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpToolsProtocol


class CorkedTransport:
    """Delegates to the real transport, except that writes are gathered until the end of the loop turn."""

    __slots__ = ("_loop", "_pending", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self._loop.call_soon(self.flush)
        else:
            pending.append(data)

    def writelines(self, lines: list[bytes]) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if not pending or self.transport.is_closing():
            return
        self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._pending = None
        self.transport.abort()

    def get_write_buffer_size(self) -> int:
        pending = self._pending
        return self.transport.get_write_buffer_size() + (sum(map(len, pending)) if pending else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class HttpToolsProtocol(_HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CorkedTransport(transport, self.loop)  # type: ignore[assignment]

    def handle_websocket_upgrade(self) -> None:
        corked = self.transport
        if isinstance(corked, CorkedTransport):
            corked.flush()
            self.transport = corked.transport
        super().handle_websocket_upgrade()
