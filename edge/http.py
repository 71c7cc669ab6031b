"""uvicorn's httptools protocol with corked writes (what one event-loop turn writes to a visitor's connection goes
out in one send()) and a lazy keep-alive timer.

uvicorn writes a response's head as soon as `http.response.start` arrives and its body on the next message: two
send() calls, two TCP segments, for every small response. py-spy under wrk showed those writes as the largest
single cost of the edge process (each send on loopback also runs the receiver's side of TCP). The edge sends the
head and a small body in the same turn, so they merge here. Select it with uvicorn's
``--http edge.http:HttpToolsProtocol`` (docs/benchmarks.md, "Edge", has the figures).

uvicorn arms a keep-alive timer after every response and cancels it when the next request arrives: a timer per
request, 2.4 µs (call_later + cancel in uvloop, measured) of the edge's ~70 µs. Here a connection keeps one timer
while it is open; when it fires it checks how long the connection has really been idle, and re-arms for the rest.

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
    _idle_since: float | None = None  # loop time of the last response completed with nothing after it

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CorkedTransport(transport, self.loop)  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._cancel_keep_alive()

    def handle_websocket_upgrade(self) -> None:
        self._cancel_keep_alive()
        corked = self.transport
        if isinstance(corked, CorkedTransport):
            corked.flush()
            self.transport = corked.transport
        super().handle_websocket_upgrade()

    # -- keep-alive: one timer per connection, re-armed only when it fires (uvicorn: one per request) ----------

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None  # a request is arriving: not idle; the timer, if armed, sees it when it fires

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:  # a pipelined request waits: start it (as uvicorn does)
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self._keep_alive_expired)

    def _keep_alive_expired(self) -> None:
        self.timeout_keep_alive_task = None
        idle_since = self._idle_since
        if idle_since is None or self.transport.is_closing():
            return  # busy: the next completed response arms the timer again
        remaining = idle_since + self.timeout_keep_alive - self.loop.time()
        if remaining > 0:
            self.timeout_keep_alive_task = self.loop.call_later(remaining, self._keep_alive_expired)
        else:
            self.timeout_keep_alive_handler()

    def _cancel_keep_alive(self) -> None:
        self._idle_since = None
        timer, self.timeout_keep_alive_task = self.timeout_keep_alive_task, None
        if timer is not None:
            timer.cancel()
