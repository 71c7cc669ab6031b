"""The connector's data plane: streams opened by the edge (REQUEST) are proxied to the origin of the matching
ingress rule, responses stream back, per docs/protocol.md ("Data plane").

Design, for throughput and fairness on one event loop:

* The connection's reader never awaits a stream: every frame is dispatched synchronously (`Mux.on_request`,
  `Mux.on_frame`). A REQUEST that finds an idle pooled origin connection is written to it at once; the origin's
  bytes are parsed in its Protocol callbacks and turned into RESPONSE/DATA frames there (httpclient.py). An HTTP
  request costs a task only when a new origin connection must be dialled; a websocket stream runs two tasks.
* Outgoing frames are queued and written in one batch per event-loop turn (`Mux._flush`).
* Flow control both ways, per stream: DATA to the edge never exceeds the edge's window (the rest waits, and the
  origin's socket stops being read); request body bytes are granted back (WINDOW) as they are handed to the origin
  socket (not while its write buffer is above the high-water mark), so the connector buffers at most one window per
  stream. A websocket that the edge's buffer cannot take (`Mux.congested`) holds streams back the same way.
* The ingress rules are read once per REQUEST: a pushed configuration swaps them atomically (supervisor.ConfigState)
  and streams in flight finish on the rules they started with.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import logging
import os
import struct
from typing import Any

from . import protocol
from .access import AccessDenied, AccessVerifier, token_from_headers
from .hello import render as render_hello
from .httpclient import (
    OriginError,
    OriginPool,
    Resolver,
    Target,
    TLSContexts,
    open_origin_socket,
    server_name_for,
    tls_error,
)
from .protocol import HEADER, INITIAL_WINDOW, MAX_DATA_CHUNK, MAX_PAYLOAD_SIZE, PROTOCOL_VERSION, Kind, ResetCode
from .websocket import GUID, ConnectionClosed, WebSocket, WebSocketError

log = logging.getLogger("connector")

GRANT_THRESHOLD = INITIAL_WINDOW // 2  # WINDOW frames are sent in batches of at least half a window
CONGESTION_HIGH = 1024 * 1024  # bytes queued on the edge websocket above which streams hold back their bodies
# Frames queued in one event-loop turn leave together at its end (one BATCH); once this many wait, and the last one is
# not a DATA frame that END_STREAM may still be folded into, they leave at once: the edge starts answering visitors
# while the connector still reads the origins' other answers. 16 frames: ~8 small responses (RESPONSE + DATA).
# Measured with bench/edge (interleaved A/B, docs/benchmarks.md "Edge"): +11 % req/s at c=50 over end-of-turn only.
EARLY_FLUSH_FRAMES = 16
# disableChunkedEncoding with a body of unknown length: buffered up to this size to send a Content-Length.
MAX_BUFFERED_BODY = 16 * 1024 * 1024
MAX_WS_HANDSHAKE = 64 * 1024

_REQUEST, _RESPONSE, _DATA, _RESET, _WINDOW, _WS_MESSAGE = (
    int(Kind.REQUEST),
    int(Kind.RESPONSE),
    int(Kind.DATA),
    int(Kind.RESET),
    int(Kind.WINDOW),
    int(Kind.WS_MESSAGE),
)
_KIND_NAMES = {int(kind): kind.name for kind in Kind}
_END = int(protocol.Flags.END_STREAM)
_BINARY = int(protocol.Flags.WS_BINARY)
_pack_header = HEADER.pack
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")

# Request headers never forwarded as received: the connector writes its own Host and framing; the rest are
# hop-by-hop (the edge already drops them; dropped again here because the origin connection is ours).
_SKIP_REQUEST = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
    }
)
_SKIP_WS_REQUEST = _SKIP_REQUEST | frozenset(
    {b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions", b"content-length"}
)
# Response headers not passed to the edge: the body is sent de-chunked, and the connection is ours.
_SKIP_RESPONSE = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
_BODYLESS_METHODS_NEED_LENGTH = frozenset({"POST", "PUT", "PATCH"})
_NO_CONFIG_BODY = (
    b"This tunnel has no ingress rules yet: the connector has not received a configuration.\n"
    b"Add a public hostname to the tunnel, then try again.\n"
)
_NO_CONFIG_LENGTH = b"%d" % len(_NO_CONFIG_BODY)


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The request's Cf-Ray (the edge's request id), for logs both sides can be correlated with."""
    for name, value in headers:
        if name == b"cf-ray":
            return value.decode("latin-1")
    return "-"


def _host_only(authority: str) -> str:
    """The request host without a port, for TLS server names."""
    if authority.startswith("["):
        end = authority.find("]")
        return authority[1:end] if end > 0 else authority
    if authority.count(":") == 1:
        return authority.rsplit(":", 1)[0]
    return authority


class DataPlane:
    """What the connections of one connector share: origin pools, TLS contexts, the name cache."""

    def __init__(self, config: Any, extra_ca_file: str = "", connector_id: str = "") -> None:
        self.config = config  # supervisor.ConfigState: `.ingress` is read once per request
        self.connector_id = connector_id
        self.resolver = Resolver()
        self.tls = TLSContexts(extra_ca_file)
        self._pools: dict[tuple, OriginPool] = {}
        self._rule_pools: dict[int, tuple[Any, OriginPool]] = {}  # id(rule) -> (rule, pool): the per-request fast path
        self._http2_warned: set[str] = set()
        self.access = AccessVerifier()
        self.requests = 0
        self.errors = 0

    @property
    def extra_ca_file(self) -> str:
        return self.tls.extra_ca_file

    @extra_ca_file.setter
    def extra_ca_file(self, path: str) -> None:
        """The Origin CA bundle hook: origins are verified against the system roots, caPool and this file."""
        self.tls.extra_ca_file = path
        self._rule_pools.clear()

    def set_origin_ca(self, pem: str) -> None:
        """The control plane's Origin CA roots (with each CONFIG): origins are verified against them too. A changed
        bundle (a rotated root) drops the cached contexts and pools, so new origin connections use it."""
        if pem == self.tls.origin_ca_pem:
            return
        try:
            self.tls.set_origin_ca(pem)
        except ValueError as exc:
            log.error("Ignoring the Origin CA roots sent by the control plane: %s", exc)
            return
        self._rule_pools.clear()
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        log.info(
            "Origin CA roots updated (%d root%s)",
            pem.count("BEGIN CERTIFICATE"),
            "" if pem.count("BEGIN CERTIFICATE") == 1 else "s",
        )

    def attach(self, conn: Any) -> Mux:
        return Mux(self, conn)

    def pool_for(self, rule: Any, authority: str) -> OriginPool:
        """The pool of the rule's origin. Raises OriginError (e.g. an unreadable caPool)."""
        settings = rule.origin_request
        entry = self._rule_pools.get(id(rule))
        if entry is not None and entry[0] is rule and not settings.match_sni_to_host:
            return entry[1]
        service = rule.service
        kind = service.kind
        tls = kind in ("https", "unix+tls")
        if settings.http2_origin and service.raw not in self._http2_warned:
            self._http2_warned.add(service.raw)
            log.warning(
                "http2Origin is set for %s but this connector speaks HTTP/1.1 to origins: using HTTP/1.1", service.raw
            )
        server_name = ""
        if tls:
            server_name = server_name_for(
                service.host, _host_only(authority), settings.origin_server_name, settings.match_sni_to_host
            )
        key = (
            kind,
            service.host,
            service.port,
            service.path,
            server_name,
            settings.ca_pool if tls else "",
            settings.no_tls_verify if tls else False,
            settings.connect_timeout,
            settings.tls_timeout,
            settings.tcp_keep_alive,
            settings.keep_alive_connections,
            settings.keep_alive_timeout,
        )
        pool = self._pools.get(key)
        if pool is None:
            target = Target(
                host=service.host,
                port=service.port or 0,
                unix_path=service.path,
                ssl_context=self.tls.get(settings.ca_pool, settings.no_tls_verify) if tls else None,
                server_hostname=server_name,
                connect_timeout=settings.connect_timeout,
                tls_timeout=settings.tls_timeout,
                tcp_keep_alive=settings.tcp_keep_alive,
                keep_alive_connections=settings.keep_alive_connections,
                keep_alive_timeout=settings.keep_alive_timeout,
            )
            pool = self._pools[key] = OriginPool(target, self.resolver)
        if not settings.match_sni_to_host:
            if len(self._rule_pools) > 4096:
                self._rule_pools.clear()
            self._rule_pools[id(rule)] = (rule, pool)
        return pool

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._rule_pools.clear()


class Mux:
    """The streams of one connection to the control plane, and its outgoing frame queue."""

    def __init__(self, plane: DataPlane, conn: Any) -> None:
        self.plane = plane
        self.conn = conn  # supervisor.Connection: .ws, .streams, .draining, .index, .stats
        self.ws = conn.ws
        self.streams: dict[int, Any] = conn.streams
        self.frames_sent = conn.stats.frames_sent
        self.loop = asyncio.get_running_loop()
        self.out: list[bytes] = []
        self._flush_scheduled = False
        self.congested = False
        self.blocked: list[Any] = []
        self.closed = False
        self.last_stream_id = 0
        self.batching = False  # the server advertised `batch`: a turn's frames travel in BATCH messages
        self.last_data = -1  # stream id of the last frame queued in `out` when it is a DATA frame without END

    # -- sending ---------------------------------------------------------------------------------------------

    def frame(self, kind: int, stream_id: int, flags: int, payload: bytes) -> None:
        if self.closed:
            return
        self.out.append(_pack_header(PROTOCOL_VERSION, kind, flags, stream_id) + payload)
        self.last_data = stream_id if kind == _DATA and not flags else -1
        self.frames_sent[_KIND_NAMES[kind]] += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        elif len(self.out) >= EARLY_FLUSH_FRAMES and self.last_data == -1:
            self._flush()
            self._flush_scheduled = True  # the call_soon above is still pending: it finds what came after

    def end_stream(self, stream_id: int) -> None:
        """END_STREAM for a stream's body: set on its last DATA frame when that is still queued (a small response
        then travels as RESPONSE + one DATA), else an empty DATA frame carries it."""
        if self.last_data == stream_id and self.out:
            last = self.out[-1]
            self.out[-1] = _pack_header(PROTOCOL_VERSION, _DATA, _END, stream_id) + last[HEADER.size :]
            self.last_data = -1
            if len(self.out) >= EARLY_FLUSH_FRAMES:  # what frame() held back for this END leaves now
                self._flush()
                self._flush_scheduled = True  # frame()'s call_soon is still pending
            return
        self.frame(_DATA, stream_id, _END, b"")

    def response(self, stream_id: int, status: int, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        self.frame(_RESPONSE, stream_id, _END if end else 0, protocol.response_payload(status, headers))

    def reset(self, stream_id: int, code: int, message: str = "") -> None:
        self.frame(_RESET, stream_id, 0, protocol.Reset(stream_id, code, message).payload())

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self.out
        if not out or self.closed:
            return
        self.out = []
        self.last_data = -1
        if self.batching and len(out) > 1:
            out = protocol.encode_batches(out)
        try:
            self.ws.send_nowait(out)
        except ConnectionClosed:
            return
        if not self.congested and self.ws.buffered > CONGESTION_HIGH:
            self.congested = True
            self.loop.create_task(self._relieve())

    async def _relieve(self) -> None:
        try:
            await self.ws.drain()
        except (ConnectionClosed, OSError):
            return
        self.congested = False
        blocked, self.blocked = self.blocked, []
        for stream in blocked:
            stream.pump()

    # -- receiving -------------------------------------------------------------------------------------------

    def on_request(self, message: protocol.Request) -> None:
        stream_id = message.stream_id
        if not stream_id & 1 or stream_id <= self.last_stream_id:
            raise protocol.ProtocolError(f"REQUEST on stream {stream_id}: ids must be odd and increasing")
        self.last_stream_id = stream_id
        if self.conn.draining or self.closed:
            self.reset(stream_id, ResetCode.REFUSED_STREAM, "the connector is draining")
            return
        ingress = self.plane.config.ingress  # captured once: a config push does not change this request's rules
        self.plane.requests += 1
        if ingress is None:
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", _NO_CONFIG_LENGTH)]
            self.response(stream_id, 503, headers, end=False)
            self.frame(_DATA, stream_id, _END, _NO_CONFIG_BODY)
            return
        _index, rule = ingress.match(message.authority, message.target)
        access = rule.origin_request.access
        if access is not None and access.required:
            self.admit(message, rule, access)
            return
        self.start(message, rule)

    def admit(self, message: protocol.Request, rule: Any, access: Any) -> None:
        """`originRequest.access.required`: only a request with a valid Access token for the rule's AUD tags goes on
        (connector/access.py). Decided at once from cached keys; otherwise the stream waits for the keys."""
        token = token_from_headers(message.headers)
        try:
            claims = self.plane.access.check_now(token, access.team_name, access.aud_tags) if token else None
        except AccessDenied as exc:
            self.deny(message, str(exc))
            return
        if claims is not None:
            self.start(message, rule)
            return
        if not token:
            self.deny(message, "no Access token (Cf-Access-Jwt-Assertion) on the request")
            return
        pending = PendingAccess(self, message, rule, token, access)
        self.streams[message.stream_id] = pending
        pending.begin()

    def deny(self, message: protocol.Request, reason: str) -> None:
        log.warning("access: refused %s %s%s: %s", message.method, message.authority, message.target[:200], reason)
        body = b"Forbidden: this hostname requires a valid Cloudflare Access token.\n"
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        self.response(message.stream_id, 403, headers, end=False)
        self.frame(_DATA, message.stream_id, _END, body)

    def start(self, message: protocol.Request, rule: Any) -> None:
        stream_id = message.stream_id
        kind = rule.service.kind
        if kind == "http_status":
            status = rule.service.status
            headers = [] if status < 200 or status in (204, 304) else [(b"content-length", b"0")]
            self.response(stream_id, status, headers, end=True)
        elif kind == "hello_world":
            if message.websocket:
                stream: Any = EchoStream(self, message)
                self.streams[stream_id] = stream
                stream.start()
            else:
                status, headers, body = render_hello(
                    message.method, message.target, message.authority, message.headers, self.plane.connector_id
                )
                if message.method == "HEAD":
                    self.response(stream_id, status, headers, end=True)
                else:
                    self.response(stream_id, status, headers, end=False)
                    self.frame(_DATA, stream_id, _END, body)  # a few KiB: within the initial window
        else:
            stream = (WebSocketStream if message.websocket else HttpStream)(self, message, rule)
            self.streams[stream_id] = stream
            stream.start()

    def on_frame(self, message: Any) -> None:
        stream = self.streams.get(message.stream_id)
        if stream is None:
            return  # unknown or finished stream: dropped, as in HTTP/2
        kind = message.KIND
        if kind == _DATA:
            stream.on_data(message.data, message.end_stream)
        elif kind == _WINDOW:
            stream.on_window(message.increment)
        elif kind == _RESET:
            stream.on_reset(message.code, message.message)
        elif kind == _WS_MESSAGE:
            stream.on_ws_message(message)
        else:  # RESPONSE travels connector -> edge only
            raise protocol.ProtocolError(f"unexpected {kind.name} from the server")

    def close(self) -> None:
        """The connection is gone: abort every stream (their origin requests are cancelled)."""
        if self.closed:
            return
        self.closed = True
        self.out = []
        for stream in list(self.streams.values()):
            stream.abort()
        self.streams.clear()
        self.blocked = []


class PendingAccess:
    """A stream whose Access token waits for the team's keys: frames that arrive meanwhile are kept (at most one
    window of body) and replayed to the real stream once the token verifies; a refused token gets 403."""

    def __init__(self, mux: Mux, message: protocol.Request, rule: Any, token: str, access: Any) -> None:
        self.mux, self.message, self.rule, self.token, self.access = mux, message, rule, token, access
        self.frames: list[tuple[str, Any]] = []
        self.task: asyncio.Future | None = None
        self.aborted = False

    def begin(self) -> None:
        self.task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        mux, message = self.mux, self.message
        try:
            await mux.plane.access.check(self.token, self.access.team_name, self.access.aud_tags)
        except AccessDenied as exc:
            if not self.aborted and mux.streams.get(message.stream_id) is self:
                del mux.streams[message.stream_id]
                mux.deny(message, str(exc))
            return
        if self.aborted or mux.closed or mux.streams.get(message.stream_id) is not self:
            return
        del mux.streams[message.stream_id]
        mux.start(message, self.rule)
        stream = mux.streams.get(message.stream_id)
        for kind, value in self.frames:
            if stream is None:
                break
            if kind == "data":
                stream.on_data(*value)
            elif kind == "window":
                stream.on_window(value)
            elif kind == "ws":
                stream.on_ws_message(value)

    def on_data(self, data: bytes, end_stream: bool) -> None:
        self.frames.append(("data", (data, end_stream)))

    def on_window(self, increment: int) -> None:
        self.frames.append(("window", increment))

    def on_ws_message(self, message: Any) -> None:
        self.frames.append(("ws", message))

    def on_reset(self, code: Any, message: str) -> None:
        self.abort()
        self.mux.streams.pop(self.message.stream_id, None)

    def abort(self) -> None:
        self.aborted = True
        if self.task is not None:
            self.task.cancel()


# ------------------------------------------------------------------------------------------------ HTTP streams


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
        skip = _SKIP_REQUEST
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
            self.mux.frame(_WINDOW, self.id, 0, _U32.pack(grant))

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
        self.mux.frame(_DATA, self.id, _END, body)
        self.body_buffer = []
        self._finish()

    # -- response: origin -> edge ----------------------------------------------------------------------------

    def on_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        out = []
        end = self.request.method == "HEAD" or status in (204, 304)
        skip = _SKIP_RESPONSE
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
            self.mux.frame(_DATA, self.id, 0, data)
        else:  # memoryview slices: each chunk is copied once, into its frame
            view = memoryview(data)
            for offset in range(0, len(data), MAX_DATA_CHUNK):
                self.mux.frame(_DATA, self.id, 0, view[offset : offset + MAX_DATA_CHUNK])

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
                mux.frame(_DATA, self.id, 0, data)
            else:  # a memoryview of the rest: slicing a large read chunk by chunk copied it over and over
                view = data if isinstance(data, memoryview) else memoryview(data)
                pending[0] = view[size:]
                mux.frame(_DATA, self.id, 0, view[:size])
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


class _Refused(Exception):
    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers
        self.body = body


class _WsBase:
    """Flow control and bookkeeping shared by the websocket streams."""

    def __init__(self, mux: Mux, request: protocol.Request) -> None:
        self.mux = mux
        self.id = request.stream_id
        self.request = request
        self.send_window = INITIAL_WINDOW
        self.recv_window = INITIAL_WINDOW
        self.unacked = 0
        self.window_open = asyncio.Event()
        self.window_open.set()
        self.inbound: collections.deque[protocol.WsMessage] = collections.deque()
        self.inbound_ready = asyncio.Event()
        self.finished = False
        self.task: asyncio.Task | None = None

    def on_data(self, data: bytes, end: bool) -> None:
        if data or not end:
            self.fail(ResetCode.PROTOCOL_ERROR, "DATA on a websocket stream")

    def on_window(self, increment: int) -> None:
        self.send_window += increment
        if self.send_window > 0:
            self.window_open.set()

    def on_ws_message(self, message: protocol.WsMessage) -> None:
        # A message may overdraw the window once (it cannot be split): it is accepted while the window is positive.
        if self.recv_window <= 0 and not message.end_stream:
            self.fail(ResetCode.FLOW_CONTROL_ERROR, "the edge exceeded the stream window")
            return
        self.recv_window -= len(message.data)
        self.inbound.append(message)
        self.inbound_ready.set()

    async def next_inbound(self) -> protocol.WsMessage:
        while not self.inbound:
            self.inbound_ready.clear()
            await self.inbound_ready.wait()
        return self.inbound.popleft()

    def consumed(self, size: int) -> None:
        self.unacked += size
        if self.unacked >= GRANT_THRESHOLD and not self.finished:
            grant, self.unacked = self.unacked, 0
            self.recv_window += grant
            self.mux.frame(_WINDOW, self.id, 0, _U32.pack(grant))

    async def send_message(self, data: bytes, binary: bool) -> None:
        while self.send_window <= 0 or self.mux.congested:
            if self.mux.congested:
                await asyncio.sleep(0.005)
                continue
            self.window_open.clear()
            await self.window_open.wait()
        self.send_window -= len(data)
        self.mux.frame(_WS_MESSAGE, self.id, _BINARY if binary else 0, data)

    def send_close(self, code: int, reason: str = "") -> None:
        if code in (1005, 1006):
            payload = b"" if code == 1005 else _U16.pack(1011) + b"the origin connection was lost"
        else:
            payload = _U16.pack(code) + reason.encode("utf-8")[:123]
        self.mux.frame(_WS_MESSAGE, self.id, _END, payload)

    def on_reset(self, code: int, message: str) -> None:
        self.abort()

    def fail(self, code: int, message: str) -> None:
        if not self.finished:
            self.mux.reset(self.id, code, message)
            self.abort()

    def abort(self) -> None:
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        self._finish()

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.mux.streams.pop(self.id, None)
        self.window_open.set()


class EchoStream(_WsBase):
    """hello_world's websocket: every message comes back, as cloudflared's hello world echoes."""

    def start(self) -> None:
        self.mux.response(self.id, 101, [], end=False)
        self.task = self.mux.loop.create_task(self._run())

    async def _run(self) -> None:
        try:
            while not self.finished:
                message = await self.next_inbound()
                if message.end_stream:
                    code, reason = message.close_code()
                    self.send_close(code if code != 1005 else 1000, reason)
                    break
                await self.send_message(message.data, message.binary)
                self.consumed(len(message.data))
        finally:
            self._finish()


class WebSocketStream(_WsBase):
    """A websocket passthrough: the connector makes its own handshake with the origin, then relays messages."""

    def __init__(self, mux: Mux, request: protocol.Request, rule: Any) -> None:
        super().__init__(mux, request)
        self.rule = rule
        self.ws: WebSocket | None = None

    def start(self) -> None:
        self.task = self.mux.loop.create_task(self._run())

    async def _run(self) -> None:
        writer_task = None
        try:
            try:
                ws, subprotocol = await self._open()
            except OriginError as error:
                self._log_failure(error.message)
                self.fail(error.code, error.message)
                return
            except _Refused as refused:
                self.mux.response(self.id, refused.status, refused.headers, end=not refused.body)
                if refused.body:
                    self.mux.frame(_DATA, self.id, _END, refused.body[: self.send_window])
                self._finish()
                return
            self.ws = ws
            headers = [(b"sec-websocket-protocol", subprotocol)] if subprotocol else []
            self.mux.response(self.id, 101, headers, end=False)
            writer_task = self.mux.loop.create_task(self._to_origin(ws))
            await self._from_origin(ws)
        except asyncio.CancelledError:
            if self.ws is not None:
                self.ws.abort()
            raise
        except Exception as error:  # a bug must cost this stream only
            log.exception("Websocket stream %s failed", self.id)
            self.fail(ResetCode.INTERNAL_ERROR, f"connector error: {error}")
        finally:
            if writer_task is not None:
                writer_task.cancel()
            self._finish()

    async def _from_origin(self, ws: WebSocket) -> None:
        while True:
            try:
                message = await ws.recv()
            except ConnectionClosed as closed:
                if not self.finished:
                    self.send_close(closed.code, closed.reason)
                return
            if isinstance(message, str):
                await self.send_message(message.encode("utf-8"), False)
            else:
                await self.send_message(message, True)

    async def _to_origin(self, ws: WebSocket) -> None:
        try:
            while True:
                message = await self.next_inbound()
                if message.end_stream:
                    code, reason = message.close_code()
                    await ws.close(1000 if code in (1005, 1006) else code, reason)
                    return
                if message.binary:
                    await ws.send(message.data)
                else:
                    await ws.send(message.data.decode("utf-8", "replace"))
                self.consumed(len(message.data))
        except (ConnectionClosed, WebSocketError, OSError):
            return

    def _log_failure(self, message: str) -> None:
        self.mux.plane.errors += 1
        log.error(
            "Websocket request failed: %s cf-ray=%s host=%s path=%s originService=%s ingressRule=%s connIndex=%s",
            message,
            request_id(self.request.headers),
            self.request.authority,
            self.request.target,
            self.rule.service.raw,
            self.rule.index,
            self.mux.conn.index,
        )

    async def _open(self) -> tuple[WebSocket, bytes]:
        """Connect, TLS, and the websocket handshake with the origin. Raises OriginError or _Refused."""
        pool = self.mux.plane.pool_for(self.rule, self.request.authority)
        target = pool.target
        sock = await open_origin_socket(target, pool.resolver)
        try:
            if target.ssl_context is None:
                reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_WS_HANDSHAKE)
            else:
                timeout = target.tls_timeout
                opening = asyncio.open_connection(
                    sock=sock,
                    limit=MAX_WS_HANDSHAKE,
                    ssl=target.ssl_context,
                    server_hostname=target.server_hostname or None,
                    ssl_handshake_timeout=(timeout + 5) if timeout > 0 else None,
                )
                try:
                    reader, writer = await (asyncio.wait_for(opening, timeout) if timeout > 0 else opening)
                except asyncio.TimeoutError:
                    raise OriginError(
                        f"origin did not complete the TLS handshake within {timeout:g} s ({target.name}, tlsTimeout)",
                        ResetCode.TIMEOUT,
                    )
                except (OSError, EOFError) as exc:
                    raise tls_error(exc, target)
        except BaseException:
            sock.close()
            raise
        try:
            subprotocol = await self._handshake(reader, writer)
        except BaseException:
            writer.close()
            raise
        return WebSocket(reader, writer, max_message_size=MAX_PAYLOAD_SIZE), subprotocol

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        request = self.request
        settings = self.rule.origin_request
        key = base64.b64encode(os.urandom(16))
        host = (settings.http_host_header or request.authority).encode("latin-1")
        parts = [
            b"GET ",
            (request.target or "/").encode("latin-1"),
            b" HTTP/1.1\r\nhost: ",
            host,
            b"\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: ",
            key,
            b"\r\nsec-websocket-version: 13\r\n",
        ]
        lines = 7  # line ends: request, host, upgrade, connection, key, version, the blank line; one per header
        for name, value in request.headers:
            if name not in _SKIP_WS_REQUEST:
                parts += (name, b": ", value, b"\r\n")
                lines += 1
        if settings.http_host_header:
            parts += (b"x-forwarded-host: ", request.authority.encode("latin-1"), b"\r\n")
            lines += 1
        parts.append(b"\r\n")
        head = b"".join(parts)
        if head.count(b"\n") != lines or head.count(b"\r") != lines or b" " in parts[1]:
            raise OriginError("cannot forward this request: a header or the target contains a line break")
        writer.write(head)
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            raise OriginError("origin closed the connection before answering the websocket handshake")
        except asyncio.LimitOverrunError:
            raise OriginError("origin's answer to the websocket handshake is too large")
        except OSError as exc:
            raise OriginError(f"origin connection failed during the websocket handshake: {exc}")
        status_line, *header_lines = raw[:-4].split(b"\r\n")
        fields = status_line.split(b" ", 2)
        if len(fields) < 2 or not fields[0].startswith(b"HTTP/1.") or not fields[1].isdigit():
            raise OriginError(f"origin sent an invalid HTTP response: {status_line[:60]!r}")
        status = int(fields[1])
        headers: list[tuple[bytes, bytes]] = []
        for line in header_lines:
            name, sep, value = line.partition(b":")
            if not sep:
                raise OriginError(f"origin sent an invalid HTTP response header: {line[:60]!r}")
            headers.append((name.strip().lower(), value.strip()))
        found = dict(headers)
        if status != 101:
            body = b""
            length = found.get(b"content-length", b"")
            if length.isdigit() and 0 < int(length) <= 64 * 1024:
                try:
                    body = await asyncio.wait_for(reader.readexactly(int(length)), 5)
                except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError):
                    body = b""
            kept = [(n, v) for n, v in headers if n not in _SKIP_RESPONSE and n != b"content-length"]
            kept.append((b"content-length", b"%d" % len(body)))
            raise _Refused(status, kept, body)
        expected = base64.b64encode(hashlib.sha1(key + GUID.encode("ascii")).digest())
        if found.get(b"sec-websocket-accept", b"") != expected:
            raise OriginError("origin's websocket handshake is invalid: Sec-WebSocket-Accept does not match the key")
        if found.get(b"sec-websocket-extensions"):
            raise OriginError("origin chose a websocket extension that was not offered")
        return found.get(b"sec-websocket-protocol", b"")
