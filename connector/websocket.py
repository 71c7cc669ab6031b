"""A small RFC 6455 websocket client over asyncio streams (ws:// and wss://), standard library only.

Client side only: frames are masked, server frames must not be; fragmented messages are reassembled; pings
are answered while a reader is in `recv()`; messages larger than `max_message_size` are refused with 1009
before they are buffered; `close()` performs the closing handshake. No extensions, no subprotocols.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import ssl as ssl_module
import struct
from collections.abc import Mapping, Sequence
from typing import Union
from urllib.parse import urlsplit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA_OPCODES = (OP_CONTINUATION, OP_TEXT, OP_BINARY)
_CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
# Close codes a peer may send (RFC 6455 7.4): 1004-1006 and 1015 are reserved for local use.
_VALID_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
MAX_HANDSHAKE_SIZE = 16 * 1024

Message = Union[bytes, str]


class WebSocketError(Exception):
    pass


class InvalidURL(WebSocketError):
    pass


class HandshakeError(WebSocketError):
    """The server did not switch protocols. `status` is its HTTP status (0 for a garbled answer)."""

    def __init__(self, message: str, status: int = 0, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class ConnectionClosed(WebSocketError):
    """The connection is closed. `code`/`reason` are the peer's close frame, or 1006 when it just went away."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class _Fail(Exception):
    """Internal: the peer broke the websocket protocol; fail the connection with this close code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def parse_url(url: str) -> tuple[bool, str, int, str]:
    """ws(s)://host[:port]/path?query -> (secure, host, port, resource)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise InvalidURL(f"{url!r} is not a ws:// or wss:// URL")
    if not parts.hostname:
        raise InvalidURL(f"{url!r} has no host")
    if parts.username or parts.password or parts.fragment:
        raise InvalidURL(f"{url!r} must not contain credentials or a fragment")
    secure = parts.scheme == "wss"
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError:
        raise InvalidURL(f"{url!r} has an invalid port")
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return secure, parts.hostname, port, resource


# XOR with a fixed byte, as translate() tables: masking byte i of a payload is translating it with table[mask[i % 4]].
_XOR_TABLES = [bytes(value ^ key for value in range(256)) for key in range(256)]


def _mask_stdlib(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask at C speed without a C extension: each of the four byte lanes (payload[i::4]) is
    one translate() with that lane's table. ~2.3x the big-integer XOR it replaced (775 vs 333 MiB/s here)."""
    size = len(payload)
    if not size:
        return b""
    if size < 64:  # short frames (control messages): fewer steps as one integer XOR
        key = (mask * (size // 4 + 1))[:size]
        return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")
    out = bytearray(payload)
    tables = _XOR_TABLES
    for lane in range(4):
        out[lane::4] = out[lane::4].translate(tables[mask[lane]])
    return bytes(out)


try:  # optional speed-up, like uvloop and httptools (the `fast` extra): websockets' C masking, ~25 GB/s
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - exercised by calling _mask_stdlib in the tests
    _apply_mask = None


def mask_payload(payload: bytes, mask: bytes) -> bytes:
    """The payload XORed with the 4-byte mask (RFC 6455 5.3). Every byte the connector sends is masked (a download
    through the tunnel is all masked DATA), so this runs at C speed: websockets' extension when installed (the
    big-integer XOR used before held a download at ~110 MiB/s), else translate() per lane."""
    if _apply_mask is not None:
        return _apply_mask(payload, mask)
    return _mask_stdlib(payload, mask)


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


async def connect(
    url: str,
    *,
    headers: Sequence[tuple[str, str]] | Mapping[str, str] = (),
    ssl: ssl_module.SSLContext | None = None,
    max_message_size: int = 1024 * 1024,
    open_timeout: float = 15.0,
) -> WebSocket:
    """Open a websocket to `url` and complete the opening handshake within `open_timeout` seconds."""
    secure, host, port, resource = parse_url(url)
    if secure and ssl is None:
        ssl = ssl_module.create_default_context()
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)

    async def _open() -> WebSocket:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl if secure else None, server_hostname=host if secure else None
        )
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            await _handshake(reader, writer, host, port, secure, resource, items)
        except BaseException:
            writer.close()
            raise
        return WebSocket(reader, writer, max_message_size=max_message_size)

    try:
        return await asyncio.wait_for(_open(), open_timeout)
    except asyncio.TimeoutError:
        raise WebSocketError(f"timed out after {open_timeout:g}s opening {url}")


async def _handshake(reader, writer, host, port, secure, resource, headers) -> None:
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    host_header = f"[{host}]" if ":" in host else host
    if port != (443 if secure else 80):
        host_header += f":{port}"
    lines = [
        f"GET {resource} HTTP/1.1",
        f"Host: {host_header}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    for name, value in headers:
        if any(c in f"{name}{value}" for c in "\r\n\0"):
            raise WebSocketError(f"invalid header {name!r}")
        lines.append(f"{name}: {value}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()

    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        raise HandshakeError("the server closed the connection during the websocket handshake")
    except asyncio.LimitOverrunError:
        raise HandshakeError("the server's handshake response is too large")
    if len(head) > MAX_HANDSHAKE_SIZE:
        raise HandshakeError("the server's handshake response is too large")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HandshakeError(f"not an HTTP response: {status_line[:80]!r}")
    status = int(parts[1])
    response: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HandshakeError(f"malformed response header {line[:80]!r}")
        name = name.strip().lower()
        response[name] = f"{response[name]}, {value.strip()}" if name in response else value.strip()

    if status != 101:
        body = await _read_error_body(reader, response)
        reason = parts[2] if len(parts) > 2 else ""
        raise HandshakeError(f"the server answered HTTP {status} {reason}".rstrip(), status=status, body=body)
    if "websocket" not in response.get("upgrade", "").lower():
        raise HandshakeError("the server's 101 response lacks 'Upgrade: websocket'")
    if "upgrade" not in [token.strip() for token in response.get("connection", "").lower().split(",")]:
        raise HandshakeError("the server's 101 response lacks 'Connection: Upgrade'")
    if response.get("sec-websocket-accept") != accept_key(key):
        raise HandshakeError("the server's Sec-WebSocket-Accept does not match the key")
    if response.get("sec-websocket-extensions") or response.get("sec-websocket-protocol"):
        raise HandshakeError("the server chose an extension or subprotocol that was not offered")


async def _read_error_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> str:
    """A little of the refusal's body, for the error message."""
    try:
        length = min(int(headers.get("content-length", "0")), 4096)
        if length <= 0:
            return ""
        body = await asyncio.wait_for(reader.readexactly(length), 2)
    except (ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError, OSError):
        return ""
    return body.decode("utf-8", "replace").strip()


class WebSocket:
    """An open client connection. One task may `recv()` while others `send()`."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, max_message_size: int = 1024 * 1024
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.max_message_size = max_message_size
        # Python 3.9's StreamWriter.drain() asserts on concurrent callers; serialise them.
        self._drain_lock = asyncio.Lock()
        self._reading = False
        self._close_sent = False
        self._closed = asyncio.Event()
        self._close_exc: ConnectionClosed | None = None
        self.local_address = writer.get_extra_info("sockname")
        self.remote_address = writer.get_extra_info("peername")

    @property
    def closed(self) -> bool:
        return self._close_exc is not None

    @property
    def close_code(self) -> int | None:
        return self._close_exc.code if self._close_exc else None

    @property
    def close_reason(self) -> str:
        return self._close_exc.reason if self._close_exc else ""

    # ---------------------------------------------------------------------------------------------- sending

    async def send(self, message: Message) -> None:
        if isinstance(message, str):
            await self._send_frame(OP_TEXT, message.encode("utf-8"))
        else:
            await self._send_frame(OP_BINARY, bytes(message))

    def send_nowait(self, messages: Sequence[bytes]) -> None:
        """Write binary messages at once, without waiting for the socket (the data plane batches its frames and
        watches `buffered` for backpressure). Raises ConnectionClosed once the connection is closing."""
        if self._close_exc is not None or self._close_sent:
            raise self._close_exc or ConnectionClosed(1006, "closing")
        frame = self._frame
        if len(messages) == 1:
            self._writer.writelines(frame(OP_BINARY, messages[0]))
        else:
            self._writer.writelines([part for message in messages for part in frame(OP_BINARY, message)])

    @property
    def buffered(self) -> int:
        """Bytes written but not yet handed to the kernel."""
        transport = self._writer.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    async def drain(self) -> None:
        """Wait until the write buffer is below its low-water mark."""
        try:
            async with self._drain_lock:
                await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            self._lost(f"write failed: {exc}")
            raise self._close_exc  # type: ignore[misc]

    async def ping(self, data: bytes = b"") -> None:
        await self._send_frame(OP_PING, data[:125])

    async def _send_frame(self, opcode: int, payload: bytes) -> None:
        if self._close_exc is not None or (self._close_sent and opcode != OP_CLOSE):
            raise self._close_exc or ConnectionClosed(1006, "closing")
        self._writer.writelines(self._frame(opcode, payload))
        try:
            async with self._drain_lock:
                await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            self._lost(f"write failed: {exc}")
            raise self._close_exc  # type: ignore[misc]

    @staticmethod
    def _frame(opcode: int, payload: bytes) -> tuple[bytes, ...]:
        """A masked frame as pieces for writelines(): joining the head to a large masked payload copied every byte
        the connector sends once more (a fifth of its CPU in a download, py-spy); the transport writes the pieces
        with one system call."""
        size = len(payload)
        mask = os.urandom(4)
        if size < 126:
            return (bytes((0x80 | opcode, 0x80 | size)) + mask + mask_payload(payload, mask),)
        if size < 65536:
            head = bytes((0x80 | opcode, 0x80 | 126)) + _U16.pack(size)
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + _U64.pack(size)
        return head + mask, mask_payload(payload, mask)

    # ---------------------------------------------------------------------------------------------- receiving

    async def recv(self) -> Message:
        """The next data message. Raises ConnectionClosed once the connection is closed (by either side).
        Cancelling a recv() abandons the connection: the stream position would be lost mid-frame."""
        if self._close_exc is not None:
            raise self._close_exc
        self._reading = True
        try:
            return await self._recv_message()
        except _Fail as fail:
            await self._fail(fail.code, fail.reason)
            raise self._close_exc  # type: ignore[misc]
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            self._lost(f"connection lost: {exc}" if not isinstance(exc, asyncio.IncompleteReadError) else "")
            raise self._close_exc  # type: ignore[misc]
        except asyncio.CancelledError:
            self.abort()
            raise
        finally:
            self._reading = False

    async def _recv_message(self) -> Message:
        fragments: list[bytes] = []
        size = 0
        message_opcode = None
        while True:
            fin, opcode, payload = await self._read_frame(size)
            if opcode >= OP_CLOSE:
                await self._handle_control(opcode, payload)
                continue
            if opcode == OP_CONTINUATION:
                if message_opcode is None:
                    raise _Fail(1002, "continuation frame without a message")
            elif message_opcode is not None:
                raise _Fail(1002, "new message before the previous one finished")
            else:
                message_opcode = opcode
            fragments.append(payload)
            size += len(payload)
            if fin:
                data = fragments[0] if len(fragments) == 1 else b"".join(fragments)
                if message_opcode == OP_BINARY:
                    return data
                try:
                    return data.decode("utf-8")
                except UnicodeDecodeError:
                    raise _Fail(1007, "text message is not valid UTF-8")

    async def _read_frame(self, buffered: int) -> tuple[bool, int, bytes]:
        first, second = await self._reader.readexactly(2)
        fin, opcode = bool(first & 0x80), first & 0x0F
        if first & 0x70:
            raise _Fail(1002, "reserved bits set without a negotiated extension")
        if second & 0x80:
            raise _Fail(1002, "server frames must not be masked")
        if opcode not in _DATA_OPCODES and opcode not in _CONTROL_OPCODES:
            raise _Fail(1002, f"unknown opcode {opcode}")
        size = second & 0x7F
        if opcode >= OP_CLOSE and (size > 125 or not fin):
            raise _Fail(1002, "control frames must be short and unfragmented")
        if size == 126:
            (size,) = _U16.unpack(await self._reader.readexactly(2))
        elif size == 127:
            (size,) = _U64.unpack(await self._reader.readexactly(8))
        if opcode < OP_CLOSE and buffered + size > self.max_message_size:
            raise _Fail(1009, f"message larger than {self.max_message_size} bytes")
        payload = await self._reader.readexactly(size) if size else b""
        return fin, opcode, payload

    async def _handle_control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            if not self._close_sent:
                await self._send_frame(OP_PONG, payload)
            return
        if opcode == OP_PONG:
            return
        code, reason = 1005, ""
        if len(payload) == 1:
            raise _Fail(1002, "close frame with a 1-byte payload")
        if len(payload) >= 2:
            (code,) = _U16.unpack_from(payload)
            if code not in _VALID_CLOSE_CODES and not 3000 <= code <= 4999:
                raise _Fail(1002, f"invalid close code {code}")
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise _Fail(1007, "close reason is not valid UTF-8")
        if not self._close_sent:
            # Echo the code, as RFC 6455 5.5.1 suggests, and wait for the server to end the TCP connection.
            try:
                await self._send_close(1000 if code == 1005 else code, "")
            except ConnectionClosed:
                pass
        self._close_exc = ConnectionClosed(code, reason)
        await self._finish()
        raise self._close_exc

    # ---------------------------------------------------------------------------------------------- closing

    async def close(self, code: int = 1000, reason: str = "", timeout: float = 5.0) -> None:
        """Closing handshake: send a close frame, wait (up to `timeout`) for the server's, end the connection."""
        if self._close_exc is not None:
            return
        try:
            if not self._close_sent:
                await asyncio.wait_for(self._send_close(code, reason), timeout)
            if self._reading:
                await asyncio.wait_for(self._closed.wait(), timeout)
            else:
                await asyncio.wait_for(self._drain_until_close(), timeout)
        except (asyncio.TimeoutError, ConnectionClosed, ConnectionError, OSError):
            pass
        if self._close_exc is None:
            self._close_exc = ConnectionClosed(code, reason)
            self.abort()

    async def _drain_until_close(self) -> None:
        """Read (and drop) data until the server's close frame arrives."""
        while self._close_exc is None:
            try:
                await self.recv()
            except ConnectionClosed:
                return

    async def _send_close(self, code: int, reason: str) -> None:
        self._close_sent = True
        payload = _U16.pack(code) + reason.encode("utf-8")[:123]
        await self._send_frame(OP_CLOSE, payload)

    async def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 7.1.7): send a close frame if we can, then drop the TCP connection."""
        if not self._close_sent:
            try:
                await asyncio.wait_for(self._send_close(code, reason), 1.0)
            except (asyncio.TimeoutError, ConnectionClosed, OSError):
                pass
        self._close_exc = ConnectionClosed(code, reason)
        self.abort()

    async def _finish(self) -> None:
        """After the close frames crossed: give the server a moment to close TCP first, then close it ourselves."""
        try:
            await asyncio.wait_for(self._discard_until_eof(), 1.0)
        except (asyncio.TimeoutError, OSError):
            pass
        self._writer.close()
        self._closed.set()

    async def _discard_until_eof(self) -> None:
        while await self._reader.read(65536):
            pass

    def _lost(self, reason: str) -> None:
        if self._close_exc is None:
            self._close_exc = ConnectionClosed(1006, reason or "connection lost")
        self.abort()

    def abort(self, reason: str = "aborted") -> None:
        """Drop the TCP connection at once (no closing handshake)."""
        if self._close_exc is None:
            self._close_exc = ConnectionClosed(1006, reason)
        transport = self._writer.transport
        if transport is not None and not transport.is_closing():
            transport.abort()
        self._closed.set()
