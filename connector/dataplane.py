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

The parts: `DataPlane` and `Mux` here (pools, the frame queue, dispatch, Access admission), the HTTP stream in
httpstream.py, the websocket streams in wsstream.py, the constants they share in frames.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from . import protocol
from .access import AccessDenied, AccessVerifier, token_from_headers
from .frames import DATA, END, KIND_NAMES, RESET, RESPONSE, WINDOW, WS_MESSAGE, pack_header
from .hello import render as render_hello
from .httpclient import (
    OriginPool,
    Resolver,
    Target,
    TLSContexts,
    server_name_for,
)
from .httpstream import HttpStream
from .protocol import HEADER, PROTOCOL_VERSION, ResetCode
from .websocket import ConnectionClosed
from .wsstream import EchoStream, WebSocketStream

log = logging.getLogger("connector")

CONGESTION_HIGH = 1024 * 1024  # bytes queued on the edge websocket above which streams hold back their bodies
# Frames queued in one event-loop turn leave together at its end (one BATCH); once this many wait, and the last one is
# not a DATA frame that END_STREAM may still be folded into, they leave at once: the edge starts answering visitors
# while the connector still reads the origins' other answers. 16 frames: ~8 small responses (RESPONSE + DATA).
# Measured with bench/edge (interleaved A/B, docs/benchmarks.md "Edge"): +11 % req/s at c=50 over end-of-turn only.
EARLY_FLUSH_FRAMES = 16
_NO_CONFIG_BODY = (
    b"This tunnel has no ingress rules yet: the connector has not received a configuration.\n"
    b"Add a public hostname to the tunnel, then try again.\n"
)
_NO_CONFIG_LENGTH = b"%d" % len(_NO_CONFIG_BODY)


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
        self.out.append(pack_header(PROTOCOL_VERSION, kind, flags, stream_id) + payload)
        self.last_data = stream_id if kind == DATA and not flags else -1
        self.frames_sent[KIND_NAMES[kind]] += 1
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
            self.out[-1] = pack_header(PROTOCOL_VERSION, DATA, END, stream_id) + last[HEADER.size :]
            self.last_data = -1
            if len(self.out) >= EARLY_FLUSH_FRAMES:  # what frame() held back for this END leaves now
                self._flush()
                self._flush_scheduled = True  # frame()'s call_soon is still pending
            return
        self.frame(DATA, stream_id, END, b"")

    def response(self, stream_id: int, status: int, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        self.frame(RESPONSE, stream_id, END if end else 0, protocol.response_payload(status, headers))

    def reset(self, stream_id: int, code: int, message: str = "") -> None:
        self.frame(RESET, stream_id, 0, protocol.Reset(stream_id, code, message).payload())

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
            self.frame(DATA, stream_id, END, _NO_CONFIG_BODY)
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
        self.frame(DATA, message.stream_id, END, body)

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
                    self.frame(DATA, stream_id, END, body)  # a few KiB: within the initial window
        else:
            stream = (WebSocketStream if message.websocket else HttpStream)(self, message, rule)
            self.streams[stream_id] = stream
            stream.start()

    def on_frame(self, message: Any) -> None:
        stream = self.streams.get(message.stream_id)
        if stream is None:
            return  # unknown or finished stream: dropped, as in HTTP/2
        kind = message.KIND
        if kind == DATA:
            stream.on_data(message.data, message.end_stream)
        elif kind == WINDOW:
            stream.on_window(message.increment)
        elif kind == RESET:
            stream.on_reset(message.code, message.message)
        elif kind == WS_MESSAGE:
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
