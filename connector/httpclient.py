"""A small asyncio HTTP/1.1 client for origins: keep-alive pools, timeouts, TLS, unix sockets. Standard library only;
`httptools` (the `fast` extra) parses responses when it is importable, a pure-Python parser otherwise.

It is callback driven, not coroutine driven: an `OriginConnection` is an `asyncio.Protocol` that parses the response
as bytes arrive and hands each piece to its *exchange* (the data plane's stream) at once, so a request that finds an
idle pooled connection costs no task and no await. Only dialling a new connection is a coroutine.

The exchange is any object with these methods (called from the event loop, never concurrently):

* `on_head(status, headers)`: the final response head (1xx interim responses are skipped); headers are
  `[(lower-case name, value)]` bytes pairs as received (Transfer-Encoding included).
* `on_body(data)`: a piece of the decoded body (chunked framing removed), as soon as it arrives.
* `on_end()`: the response is complete. The connection is then free: the exchange calls `finish(reusable)`.
* `on_error(error)`: an `OriginError`; the connection is already closed.
* `on_writable()`: the connection's write buffer drained after `pause_writing` (request body flow control).

Errors carry a message a person can act on and the protocol.ResetCode the data plane answers with.

The dialling (targets, TLS, name resolution, `OriginError`) is in origins.py; its names are importable from here.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from .origins import (
    TLS_VERIFY_HINT,
    UNKNOWN_AUTHORITY_HINT,
    OriginError,
    Resolver,
    Target,
    TLSContexts,
    env_extra_ca_file,
    open_connection,
    open_origin_socket,
    server_name_for,
    tls_error,
)

try:  # optional speed-up, like uvloop: pip install zt-connector[fast]
    import httptools
except ImportError:  # pragma: no cover - exercised by forcing the fallback in the tests
    httptools = None

log = logging.getLogger("connector")

MAX_HEAD_SIZE = 64 * 1024  # largest response head accepted from an origin

__all__ = [
    "MAX_HEAD_SIZE",
    "TLS_VERIFY_HINT",
    "UNKNOWN_AUTHORITY_HINT",
    "OriginConnection",
    "OriginError",
    "OriginPool",
    "ParseError",
    "PyResponseParser",
    "Resolver",
    "TLSContexts",
    "Target",
    "env_extra_ca_file",
    "new_parser",
    "open_connection",
    "open_origin_socket",
    "server_name_for",
    "tls_error",
]


# ------------------------------------------------------------------------------------------------ response parsing


class ParseError(Exception):
    pass


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class PyResponseParser:
    """The pure-Python fallback for httptools.HttpResponseParser, with the same callbacks (on_header,
    on_headers_complete, on_body, on_message_complete) and queries (get_status_code, should_keep_alive,
    get_http_version). Parses consecutive responses (1xx interim ones before the final one)."""

    def __init__(self, callbacks: Any) -> None:
        self._cb = callbacks
        self._buffer = bytearray()
        self._state = _HEAD
        self._remaining = 0
        self._status = 0
        self._version = "1.1"
        self._close = False
        self._keep_alive_token = False

    def get_status_code(self) -> int:
        return self._status

    def get_http_version(self) -> str:
        return self._version

    def should_keep_alive(self) -> bool:
        if self._close:
            return False
        return self._version == "1.1" or self._keep_alive_token

    def feed_data(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while buffer:
            state = self._state
            if state == _HEAD:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD_SIZE:
                        raise ParseError("response head too large")
                    return
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                self._parse_head(head)
            elif state == _LENGTH:
                size = min(self._remaining, len(buffer))
                chunk = bytes(buffer[:size])
                del buffer[:size]
                self._remaining -= size
                self._cb.on_body(chunk)
                if not self._remaining:
                    self._complete()
            elif state == _CHUNK_SIZE:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > 4096:
                        raise ParseError("chunk size line too long")
                    return
                line = bytes(buffer[:end]).split(b";", 1)[0].strip()
                del buffer[: end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise ParseError(f"invalid chunk size {line[:20]!r}")
                if size < 0:
                    raise ParseError("invalid chunk size")
                if size == 0:
                    self._state = _TRAILERS
                else:
                    self._remaining = size
                    self._state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                size = min(self._remaining, len(buffer))
                chunk = bytes(buffer[:size])
                del buffer[:size]
                self._remaining -= size
                self._cb.on_body(chunk)
                if not self._remaining:
                    self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(buffer) < 2:
                    return
                if buffer[:2] != b"\r\n":
                    raise ParseError("missing CRLF after a chunk")
                del buffer[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD_SIZE:
                        raise ParseError("trailers too large")
                    return
                del buffer[: end + 2]
                if end == 0:
                    self._complete()
            elif state == _UNTIL_CLOSE:
                chunk = bytes(buffer)
                buffer.clear()
                self._cb.on_body(chunk)
            else:
                raise ParseError("data after the response")

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status_line = lines[0]
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
            raise ParseError(f"invalid status line {status_line[:60]!r}")
        self._version = parts[0][5:].decode("latin-1")
        self._status = status = int(parts[1])
        length = None
        chunked = False
        self._close = False
        self._keep_alive_token = False
        on_header = self._cb.on_header
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise ParseError(f"invalid header line {line[:60]!r}")
            value = value.strip()
            lower = name.lower()
            if lower == b"content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise ParseError("invalid Content-Length")
                length = int(value)
            elif lower == b"transfer-encoding":
                chunked = value.lower().split(b",")[-1].strip() == b"chunked"
            elif lower == b"connection":
                tokens = [token.strip() for token in value.lower().split(b",")]
                self._close = self._close or b"close" in tokens
                self._keep_alive_token = self._keep_alive_token or b"keep-alive" in tokens
            on_header(name, value)
        self._cb.on_headers_complete()
        if 100 <= status < 200 or status in (204, 304):
            self._complete()
        elif chunked:
            self._state = _CHUNK_SIZE
        elif length is not None:
            self._remaining = length
            if length:
                self._state = _LENGTH
            else:
                self._complete()
        else:
            self._close = True
            self._state = _UNTIL_CLOSE

    def _complete(self) -> None:
        interim = 100 <= self._status < 200
        self._state = _HEAD if interim else _DONE
        self._cb.on_message_complete()


def new_parser(callbacks: Any, pure_python: bool = False) -> Any:
    if httptools is not None and not pure_python:
        return httptools.HttpResponseParser(callbacks)
    return PyResponseParser(callbacks)


_PARSE_ERRORS: tuple[type[BaseException], ...] = (ParseError,)
if httptools is not None:
    _PARSE_ERRORS = (ParseError, httptools.HttpParserError)


# ------------------------------------------------------------------------------------------------ connections


class OriginConnection(asyncio.Protocol):
    """One HTTP/1.1 connection to an origin, serving one exchange at a time (no pipelining)."""

    pure_python = False  # force the fallback parser (tests)

    def __init__(self, pool: OriginPool) -> None:
        self.pool = pool
        self.transport: Any = None
        self.exchange: Any = None
        self.parser: Any = None
        self.closed = False
        self.write_paused = False
        self.requests = 0  # exchanges started on this connection (> 1: reused)
        self.idle_since = 0.0
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._interim = False
        self._head_only = False
        self._started = False  # final head delivered
        self._received = False  # any response byte received
        self._framed = True  # body delimited by length or chunking (False: read until close)
        self._done = False

    # -- asyncio.Protocol ------------------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.exchange is None or self._done:
            # Bytes nobody asked for (an idle connection, or after a HEAD response): the connection is unusable.
            self.close()
            return
        self._received = True
        try:
            self.parser.feed_data(data)
        except _PARSE_ERRORS as exc:
            if self.exchange is not None and not self._done:
                self._fail(OriginError(f"origin sent an invalid HTTP response: {exc}"))
            else:
                self.close()

    def eof_received(self) -> bool:
        if self.exchange is not None and not self._done and self._started and not self._framed:
            self._message_complete(reusable=False)
        self.close()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.exchange is None or self._done:
            return
        if self._started and not self._framed:
            self._message_complete(reusable=False)
            return
        if self._started:
            self._lost(OriginError("origin closed the connection before the end of the response"))
        else:
            detail = f": {exc}" if exc else ""
            self._lost(
                OriginError(
                    f"origin closed the connection before responding{detail}",
                    retryable=self.requests > 1 and not self._received,
                )
            )

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.exchange is not None and not self._done:
            self.exchange.on_writable()

    # -- parser callbacks ------------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            self._headers = []
            if status == 101:
                raise ParseError("unexpected 101 Switching Protocols")
            self._interim = True
            return
        headers = self._headers
        self._headers = []
        self._started = True
        self._status = status
        framed = self._head_only or status in (204, 304)
        if not framed:
            for name, value in headers:
                if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
                    framed = True
                    break
        self._framed = framed
        self.exchange.on_head(status, headers)
        if self._head_only and not self._done and self.exchange is not None:
            self._message_complete(reusable=self._head_keep_alive(headers))

    def on_body(self, body: bytes) -> None:
        if not self._done and self.exchange is not None:
            self.exchange.on_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if not self._done and self.exchange is not None:
            self._message_complete(reusable=self.parser.should_keep_alive())

    def _head_keep_alive(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self.parser.get_http_version() != "1.1":
            return False
        return not any(name == b"connection" and b"close" in value.lower() for name, value in headers)

    # -- driving an exchange ---------------------------------------------------------------------------------

    def start(self, exchange: Any, head: bytes, head_only: bool) -> None:
        """Send a request head for `exchange`; the body (if any) follows with write()."""
        self.exchange = exchange
        self.requests += 1
        self.parser = new_parser(self, self.pure_python)
        self._headers = []
        self._interim = False
        self._head_only = head_only
        self._started = self._received = self._done = False
        self._framed = True
        self.transport.write(head)

    def write(self, data: Any) -> None:
        if not self.closed:
            self.transport.write(data)

    def writelines(self, parts: list[Any]) -> None:
        if not self.closed:
            self.transport.writelines(parts)

    def pause_reading(self) -> None:
        if not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.closed:
            self.transport.resume_reading()

    def _message_complete(self, reusable: bool) -> None:
        self._done = True
        self._reusable = reusable
        self.exchange.on_end()

    def finish(self, reusable: bool) -> None:
        """The exchange is done with this connection: back to the pool when both sides allow it."""
        reusable = reusable and self._done and getattr(self, "_reusable", False) and not self.closed
        self.exchange = None
        self.parser = None
        if reusable:
            self.pool.release(self)
        else:
            self.close()

    def _fail(self, error: OriginError) -> None:
        exchange = self.exchange
        self.exchange = None
        self._done = True
        self.close()
        if exchange is not None:
            exchange.on_error(error)

    def _lost(self, error: OriginError) -> None:
        exchange = self.exchange
        self.exchange = None
        self._done = True
        if exchange is not None:
            exchange.on_error(error)

    def abort(self) -> None:
        """Drop the connection now (the exchange was cancelled)."""
        self.exchange = None
        self._done = True
        self.closed = True
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()


class OriginPool:
    """Idle keep-alive connections to one target: at most keepAliveConnections idle ones, each dropped after
    keepAliveTimeout idle. Busy connections are not limited (as cloudflared's Go transport)."""

    def __init__(self, target: Target, resolver: Resolver) -> None:
        self.target = target
        self.resolver = resolver
        self.idle: collections.deque[OriginConnection] = collections.deque()
        self.connections_made = 0
        self._sweeper: asyncio.TimerHandle | None = None

    def take(self) -> OriginConnection | None:
        idle = self.idle
        if not idle:
            return None
        deadline = time.monotonic() - self.target.keep_alive_timeout
        while idle:
            conn = idle.pop()  # most recently used first: it is the least likely to have been closed by the origin
            if conn.closed:
                continue
            if conn.idle_since < deadline:
                conn.close()
                continue
            return conn
        return None

    def release(self, conn: OriginConnection) -> None:
        if len(self.idle) >= self.target.keep_alive_connections or self.target.keep_alive_timeout <= 0:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)
        if self._sweeper is None:
            self._schedule_sweep()

    def forget(self, conn: OriginConnection) -> None:
        if self.idle and conn in self.idle:
            self.idle.remove(conn)

    def _schedule_sweep(self) -> None:
        loop = asyncio.get_event_loop()
        self._sweeper = loop.call_later(min(self.target.keep_alive_timeout, 30.0) + 0.05, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        deadline = time.monotonic() - self.target.keep_alive_timeout
        while self.idle and self.idle[0].idle_since < deadline:  # oldest first
            self.idle.popleft().close()
        if self.idle:
            self._schedule_sweep()

    async def connect(self) -> OriginConnection:
        _transport, conn = await open_connection(self.target, self.resolver, lambda: OriginConnection(self))
        self.connections_made += 1
        return conn

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self.idle:
            self.idle.pop().close()
