"""The websocket streams of the connector's data plane (connector/dataplane.py has the design): a websocket to the
origin, or the hello_world echo, carried as WS_MESSAGE frames within the edge's window."""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import logging
import os
from typing import TYPE_CHECKING, Any

from . import protocol
from .frames import (
    BINARY,
    DATA,
    END,
    GRANT_THRESHOLD,
    SKIP_RESPONSE,
    SKIP_WS_REQUEST,
    U16,
    U32,
    WINDOW,
    WS_MESSAGE,
    request_id,
)
from .httpclient import (
    OriginError,
    open_origin_socket,
    tls_error,
)
from .protocol import INITIAL_WINDOW, MAX_PAYLOAD_SIZE, ResetCode
from .websocket import GUID, ConnectionClosed, WebSocket, WebSocketError

if TYPE_CHECKING:
    from .dataplane import Mux

log = logging.getLogger("connector")

MAX_WS_HANDSHAKE = 64 * 1024


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
            self.mux.frame(WINDOW, self.id, 0, U32.pack(grant))

    async def send_message(self, data: bytes, binary: bool) -> None:
        while self.send_window <= 0 or self.mux.congested:
            if self.mux.congested:
                await asyncio.sleep(0.005)
                continue
            self.window_open.clear()
            await self.window_open.wait()
        self.send_window -= len(data)
        self.mux.frame(WS_MESSAGE, self.id, BINARY if binary else 0, data)

    def send_close(self, code: int, reason: str = "") -> None:
        if code in (1005, 1006):
            payload = b"" if code == 1005 else U16.pack(1011) + b"the origin connection was lost"
        else:
            payload = U16.pack(code) + reason.encode("utf-8")[:123]
        self.mux.frame(WS_MESSAGE, self.id, END, payload)

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
                    self.mux.frame(DATA, self.id, END, refused.body[: self.send_window])
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
            if name not in SKIP_WS_REQUEST:
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
            kept = [(n, v) for n, v in headers if n not in SKIP_RESPONSE and n != b"content-length"]
            kept.append((b"content-length", b"%d" % len(body)))
            raise _Refused(status, kept, body)
        expected = base64.b64encode(hashlib.sha1(key + GUID.encode("ascii")).digest())
        if found.get(b"sec-websocket-accept", b"") != expected:
            raise OriginError("origin's websocket handshake is invalid: Sec-WebSocket-Accept does not match the key")
        if found.get(b"sec-websocket-extensions"):
            raise OriginError("origin chose a websocket extension that was not offered")
        return found.get(b"sec-websocket-protocol", b"")
