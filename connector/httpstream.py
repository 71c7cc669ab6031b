"""One proxied HTTP request of the connector's data plane (connector/dataplane.py has the design): the request
head and body go to a pooled origin connection, the response streams back within the edge's window."""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Any

from . import protocol
from .frames import (
    DATA,
    END,
    GRANT_THRESHOLD,
    SKIP_REQUEST,
    SKIP_RESPONSE,
    U32,
    WINDOW,
    request_id,
)
from .httpclient import (
    OriginError,
    OriginPool,
)
from .protocol import INITIAL_WINDOW, MAX_DATA_CHUNK, ResetCode

if TYPE_CHECKING:
    from .dataplane import Mux

log = logging.getLogger("connector")

# disableChunkedEncoding with a body of unknown length: buffered up to this size to send a Content-Length.
MAX_BUFFERED_BODY = 16 * 1024 * 1024
_BODYLESS_METHODS_NEED_LENGTH = frozenset({"POST", "PUT", "PATCH"})


class HttpStream:
    """One proxied HTTP request: the exchange of an OriginConnection (see httpclient.py for the callbacks)."""

    __slots__ = (
        "body_buffer",
        "buffered_size",
        "buffer_whole",
        "chunked",
        "conn",
        "connecting",
        "finished",
        "head",
        "head_sent",
        "held",
        "id",
        "mux",
        "origin_paused",
        "pending",
        "pending_end",
        "pool",
        "request",
        "request_done",
        "request_written",
        "recv_window",
        "retried",
        "rule",
        "send_window",
        "unacked",
    )

    def __init__(self, mux: Mux, request: protocol.Request, rule: Any) -> None:
        self.mux = mux
        self.id = request.stream_id
        self.request = request
        self.rule = rule
        self.send_window = INITIAL_WINDOW  # DATA bytes the edge still accepts from us
        self.recv_window = INITIAL_WINDOW  # DATA bytes the edge may still send us
        self.unacked = 0  # body bytes handed to the origin, not yet granted back
        self.held = 0  # body bytes written while the origin socket's buffer was full: granted once it drains
        self.pending: collections.deque[bytes] = collections.deque()  # response body waiting for window
        self.pending_end = False
        self.body_buffer: list[bytes] = []  # request body received before the origin connection was ready
        self.buffered_size = 0
        self.buffer_whole = False
        self.request_done = request.end_stream  # the edge sent the whole body
        self.request_written = request.end_stream  # the whole request was written to the origin
        self.conn: Any = None
        self.connecting: asyncio.Task | None = None
        self.pool: OriginPool | None = None
        self.head = b""
        self.head_sent = False
        self.chunked = False
        self.finished = False
        self.origin_paused = False
        self.retried = False

    # -- start -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self.pool = self.mux.plane.pool_for(self.rule, self.request.authority)
            self.head = self._build_head(None)
        except OriginError as error:
            self.on_error(error)
            return
        except (ValueError, UnicodeEncodeError) as error:
            self.fail(ResetCode.PROTOCOL_ERROR, f"cannot forward this request: {error}")
            return
        if self.buffer_whole:
            return  # disableChunkedEncoding without a length: the head is written once the body is complete
        self._connect()

    def _connect(self) -> None:
        assert self.pool is not None
        conn = self.pool.take()
        if conn is not None:
            self._attach(conn)
        else:
            self.connecting = self.mux.loop.create_task(self._dial())

    async def _dial(self) -> None:
        assert self.pool is not None
        try:
            conn = await self.pool.connect()
        except OriginError as error:
            self.connecting = None
            if not self.finished:
                self.on_error(error)
            return
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug must cost one request, never the connection
            self.connecting = None
            log.exception("Unexpected error connecting to %s", self.rule.service.raw)
            if not self.finished:
                self.on_error(OriginError(f"cannot connect to the origin: {error}"))
            return
        self.connecting = None
        if self.finished:
            conn.close()
            return
        self._attach(conn)

    def _build_head(self, length: int | None) -> bytes:
        request = self.request
        settings = self.rule.origin_request
        authority = request.authority
        host = settings.http_host_header or authority
        target = request.target or "/"
        parts = [request.method.encode("latin-1"), b" ", target.encode("latin-1"), b" HTTP/1.1\r\nhost: "]
        parts.append(host.encode("latin-1"))
        parts.append(b"\r\n")
        lines = 3  # line ends: the request line, host, the blank line; one per header below
        has_length = False
        skip = SKIP_REQUEST
        for name, value in request.headers:
            if name in skip:
                continue
            if name == b"content-length":
                if length is not None:
                    continue
                has_length = True
            parts += (name, b": ", value, b"\r\n")
            lines += 1
        if settings.http_host_header:
            parts += (b"x-forwarded-host: ", authority.encode("latin-1"), b"\r\n")
            lines += 1
        if length is not None:
            parts.append(b"content-length: %d\r\n" % length)
            lines += 1
        elif not request.end_stream and not has_length:
            if settings.disable_chunked_encoding:
                self.buffer_whole = True
            else:
                parts.append(b"transfer-encoding: chunked\r\n")
                self.chunked = True
                lines += 1
        elif request.end_stream and not has_length and request.method in _BODYLESS_METHODS_NEED_LENGTH:
            parts.append(b"content-length: 0\r\n")
            lines += 1
        parts.append(b"\r\n")
        head = b"".join(parts)
        # A CR or LF inside a name, value or target would let one request smuggle another to the origin.
        if head.count(b"\n") != lines or head.count(b"\r") != lines or b" " in parts[2]:
            raise ValueError("a header or the target contains a line break or a space")
        return head

    def _attach(self, conn: Any) -> None:
        self.conn = conn
        conn.start(self, self.head, self.request.method == "HEAD")
        if self.body_buffer:
            buffered, self.body_buffer = self.body_buffer, []
            for data in buffered:
                self._write_body(data)
        if self.request_done and not self.request_written:
            self._write_end()

    # -- request body: edge -> origin ------------------------------------------------------------------------

    def on_data(self, data: bytes, end: bool) -> None:
        size = len(data)
        self.recv_window -= size
        if self.recv_window < 0:
            self.fail(ResetCode.FLOW_CONTROL_ERROR, "the edge exceeded the stream window")
            return
        if self.request_done:
            return  # data after END_STREAM: ignored
        if end:
            self.request_done = True
        if self.buffer_whole:
            if size:
                self.body_buffer.append(data)
                self.buffered_size += size
                if self.buffered_size > MAX_BUFFERED_BODY:
                    self._reply_too_large()
                    return
                self._grant(size)
            if end:
                body, self.body_buffer = b"".join(self.body_buffer), []
                self.head = self._build_head(len(body))
                self.body_buffer = [body] if body else []
                self.buffer_whole = False
                self._connect()
            return
        if self.conn is None:
            if size:
                self.body_buffer.append(data)
            return
        if size:
            self._write_body(data)
        if end:
            self._write_end()

    def _write_body(self, data: bytes) -> None:
        conn = self.conn
        size = len(data)
        if self.chunked:
            conn.writelines([b"%x\r\n" % size, data, b"\r\n"])
        else:
            conn.write(data)
        if conn.write_paused:
            self.held += size
        else:
            self._grant(size)

    def _write_end(self) -> None:
        if self.chunked:
            self.conn.write(b"0\r\n\r\n")
        self.request_written = True

    def _grant(self, size: int) -> None:
        if self.request_done:
            return  # the edge sends nothing more: no credit needed
        self.unacked += size
        if self.unacked >= GRANT_THRESHOLD:
            grant, self.unacked = self.unacked, 0
            self.recv_window += grant
            self.mux.frame(WINDOW, self.id, 0, U32.pack(grant))

    def on_writable(self) -> None:
        if self.held:
            held, self.held = self.held, 0
            self._grant(held)

    def _reply_too_large(self) -> None:
        body = (
            b"The request body is larger than %d bytes and has no Content-Length, and the ingress rule sets "
            b"disableChunkedEncoding.\n" % MAX_BUFFERED_BODY
        )
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        self.mux.response(self.id, 413, headers, False)
        self.mux.frame(DATA, self.id, END, body)
        self.body_buffer = []
        self._finish()

    # -- response: origin -> edge ----------------------------------------------------------------------------

    def on_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        out = []
        end = self.request.method == "HEAD" or status in (204, 304)
        skip = SKIP_RESPONSE
        for item in headers:
            name = item[0]
            if name in skip:
                continue
            if name == b"content-length" and item[1] == b"0":
                end = True
            out.append(item)
        self.head_sent = True
        self.pending_end = end  # END_STREAM already carried by the head
        self.mux.response(self.id, status, out, end)

    def on_body(self, data: bytes) -> None:
        if not data:
            return
        if self.pending or self.mux.congested or self.send_window < len(data):
            self.pending.append(data)
            self.pump()
            return
        self.send_window -= len(data)
        if len(data) <= MAX_DATA_CHUNK:
            self.mux.frame(DATA, self.id, 0, data)
        else:  # memoryview slices: each chunk is copied once, into its frame
            view = memoryview(data)
            for offset in range(0, len(data), MAX_DATA_CHUNK):
                self.mux.frame(DATA, self.id, 0, view[offset : offset + MAX_DATA_CHUNK])

    def on_end(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            if self.origin_paused:  # the response is complete: the connection must not go idle paused
                self.origin_paused = False
                conn.resume_reading()
            # Reusable only if the origin read the whole request: an early answer leaves our body half sent.
            conn.finish(self.request_written)
        if self.pending:
            self.pending.append(b"")  # marks the end: sent with END_STREAM once the window allows
            return
        if not self.pending_end:
            self.mux.end_stream(self.id)
        self._finish()

    def pump(self) -> None:
        """Send the queued body within the edge's window; pause the origin while anything waits."""
        pending = self.pending
        mux = self.mux
        while pending and not mux.congested:
            data = pending[0]
            if not data:  # the end marker
                pending.popleft()
                if not self.pending_end:
                    mux.end_stream(self.id)
                self._finish()
                return
            window = self.send_window
            if window <= 0:
                break
            size = min(len(data), window, MAX_DATA_CHUNK)
            if size == len(data):
                pending.popleft()
                mux.frame(DATA, self.id, 0, data)
            else:  # a memoryview of the rest: slicing a large read chunk by chunk copied it over and over
                view = data if isinstance(data, memoryview) else memoryview(data)
                pending[0] = view[size:]
                mux.frame(DATA, self.id, 0, view[:size])
            self.send_window -= size
        if pending:
            if mux.congested and self not in mux.blocked:
                mux.blocked.append(self)
            if not self.origin_paused and self.conn is not None:
                self.origin_paused = True
                self.conn.pause_reading()
        elif self.origin_paused:
            self.origin_paused = False
            if self.conn is not None:
                self.conn.resume_reading()

    def on_window(self, increment: int) -> None:
        self.send_window += increment
        if self.pending:
            self.pump()

    # -- failures and the end --------------------------------------------------------------------------------

    def on_error(self, error: OriginError) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
        if self.finished:
            return
        if error.retryable and not self.retried and not self.head_sent and self.request.end_stream:
            # A pooled connection the origin had closed meanwhile: once more on a fresh one.
            self.retried = True
            self.connecting = self.mux.loop.create_task(self._dial())
            return
        self.mux.plane.errors += 1
        service = self.rule.service
        log.error(
            "Request failed: %s cf-ray=%s host=%s path=%s originService=%s ingressRule=%s connIndex=%s",
            error.message,
            request_id(self.request.headers),
            self.request.authority,
            self.request.target,
            service.raw,
            self.rule.index,
            self.mux.conn.index,
        )
        code = error.code if not self.head_sent else ResetCode.ORIGIN_ERROR
        self.fail(code, error.message)

    def fail(self, code: int, message: str) -> None:
        if self.finished:
            return
        self.mux.reset(self.id, code, message)
        self.abort()

    def on_reset(self, code: int, message: str) -> None:
        if code == ResetCode.TIMEOUT and not self.finished:
            # The edge gave up waiting (its visitor got a 504): the origin's owner needs this line to find why.
            log.warning(
                "Request timed out at the edge: %s cf-ray=%s host=%s path=%s originService=%s ingressRule=%s",
                message,
                request_id(self.request.headers),
                self.request.authority,
                self.request.target,
                self.rule.service.raw,
                self.rule.index,
            )
        else:
            log.debug("Stream %s reset by the edge: %s %s", self.id, code, message)
        self.abort()

    def on_ws_message(self, message: Any) -> None:
        self.fail(ResetCode.PROTOCOL_ERROR, "WS_MESSAGE on an HTTP stream")

    def abort(self) -> None:
        """Stop everything without sending anything (the edge reset the stream, or the connection is gone)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        self.pending.clear()
        self._finish()

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.mux.streams.pop(self.id, None)


# ------------------------------------------------------------------------------------------------ websockets
