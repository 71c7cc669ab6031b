"""The connector wire protocol: the single source of truth shared by the connector and the server.

Every websocket *binary* message is exactly one frame::

    +---------+--------+-----------+---------------+-----------------+
    | version | kind   | flags     | stream_id     | payload ...     |
    | u8 = 1  | u8     | u16       | u32           |                 |
    +---------+--------+-----------+---------------+-----------------+
                      (network byte order, struct "!BBHI", 8 bytes)

Control kinds travel on stream 0 with a UTF-8 JSON object as payload, decoded into one dataclass per kind and
validated on receipt (types and required fields; unknown fields are ignored for forward compatibility).
Data-plane kinds travel on streams >= 1 with compact binary payloads. Anything malformed raises
`ProtocolError`, which the receiver turns into a close with `CloseCode.PROTOCOL_VIOLATION` (4008).

This module is imported by the Django server too: it has no dependencies and no import-time side effects, and it
stays compatible with Python 3.9. docs/protocol.md describes the sequencing.

Its parts: the frame header, kinds, codes and `ProtocolError` in protocol_base.py, the control messages in
protocol_control.py, the data-plane messages and the codec here; every name is imported from this module.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any, ClassVar, Union

from .protocol_base import *  # noqa: F403 (this module is the protocol: it re-exports its parts)
from .protocol_base import (
    HEADER,
    HEADER_SIZE,
    KNOWN_FLAGS,
    MAX_FRAME_SIZE,
    MAX_PAYLOAD_SIZE,
    MAX_WINDOW,
    PROTOCOL_VERSION,
    Flags,
    Kind,
    ProtocolError,
)
from .protocol_control import *  # noqa: F403 (this module is the protocol: it re-exports its parts)
from .protocol_control import Config, ConfigAck, ControlMessage, Drain, Error, Hello, Ping, Pong, Welcome

# Plain ints for the per-frame paths (IntFlag arithmetic builds enum objects).
_END_STREAM, _WS_BINARY, _WEBSOCKET = int(Flags.END_STREAM), int(Flags.WS_BINARY), int(Flags.WEBSOCKET)


# --------------------------------------------------------------------------------------------------------------
# Data-plane messages: binary payloads (not used before the edge issue, but the format is fixed here).
#
# Strings are length-prefixed: u8 for method and scheme, u16 for the others; headers are a u16 count of
# (u16 name length, name, u16 value length, value). Header names and values are bytes (ASGI style); method,
# scheme, authority and target travel as latin-1 so that they round-trip any byte.
# --------------------------------------------------------------------------------------------------------------

_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")
_U16_LEN = struct.Struct("!H")  # a u16 length prefix (as opposed to a u16 number) in _parse_head
_U32 = struct.Struct("!I")


# u16 length prefixes of short strings, prebuilt: header names and most values are shorter than this, and packing
# the header block runs for every proxied request on both sides.
_SHORT = 4096
_U16_PREFIX = [_U16.pack(size) for size in range(_SHORT)]


def _pack_headers(headers: list[tuple[bytes, bytes]], parts: list[bytes]) -> None:
    if len(headers) > 0xFFFF:
        raise ProtocolError("too many headers")
    prefix = _U16_PREFIX
    pack = _U16.pack
    parts.append(pack(len(headers)))
    try:
        for name, value in headers:
            n, v = len(name), len(value)
            parts += (prefix[n] if n < _SHORT else pack(n), name, prefix[v] if v < _SHORT else pack(v), value)
    except struct.error:
        raise ProtocolError("header too long")


def _parse_head(payload: bytes, name: str, prefix: tuple[struct.Struct, ...]) -> tuple[list, list[tuple[bytes, bytes]]]:
    """Length-prefixed fields (one struct per field: u8/u16 length, or u16/u32 for a bare number), then the header
    block; the whole payload must be consumed. Written as one flat loop (u16s read as two indexed bytes): it runs
    for every proxied request."""
    fields: list = []
    headers: list[tuple[bytes, bytes]] = []
    pos = 0
    try:
        for fmt in prefix:
            (value,) = fmt.unpack_from(payload, pos)
            pos += fmt.size
            if fmt is _U8 or fmt is _U16_LEN:
                fields.append(payload[pos : pos + value])
                pos += value
            else:
                fields.append(value)
        p = payload
        count = p[pos] << 8 | p[pos + 1]
        pos += 2
        append = headers.append
        for _ in range(count):
            end = pos + 2 + (p[pos] << 8 | p[pos + 1])
            header_name = p[pos + 2 : end]
            pos = end + 2 + (p[end] << 8 | p[end + 1])
            append((header_name, p[end + 2 : pos]))
    except (struct.error, IndexError):
        raise ProtocolError(f"{name} payload is truncated")
    if pos > len(payload):
        raise ProtocolError(f"{name} payload is truncated")
    if pos < len(payload):
        raise ProtocolError(f"{name} payload has trailing bytes")
    return fields, headers


_REQUEST_PREFIX = (_U8, _U8, _U16_LEN, _U16_LEN)
# Data-plane messages decoded per proxied request are built without the frozen dataclass __init__ (one
# object.__setattr__ per field): the fields go straight into the instance's __dict__, which is all __init__ does.
# 1.24 -> 0.35 us for a REQUEST; the result is an ordinary, equal, immutable-by-convention instance.
_new = object.__new__


def request_frame(
    stream_id: int,
    method: bytes,
    scheme: bytes,
    authority: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    end_stream: bool = False,
    websocket: bool = False,
) -> bytes:
    """The REQUEST frame of `Request(...)` built straight from bytes: the edge's per-request fast path (no dataclass,
    no latin-1 round trip). Same bytes as `encode(Request(...))`."""
    if len(method) > 0xFF or len(scheme) > 0xFF or len(authority) > 0xFFFF or len(target) > 0xFFFF:
        raise ProtocolError("REQUEST field too long")
    if not method:
        raise ProtocolError("REQUEST without a method")
    flags = (_END_STREAM if end_stream else 0) | (_WEBSOCKET if websocket else 0)
    pack16 = _U16.pack
    parts = [
        HEADER.pack(PROTOCOL_VERSION, Kind.REQUEST, flags, stream_id),
        _U8.pack(len(method)),
        method,
        _U8.pack(len(scheme)),
        scheme,
        pack16(len(authority)),
        authority,
        pack16(len(target)),
        target,
    ]
    _pack_headers(headers, parts)
    frame = b"".join(parts)
    if len(frame) > MAX_FRAME_SIZE:
        raise ProtocolError(f"REQUEST of {len(frame)} bytes exceeds {MAX_FRAME_SIZE}")
    return frame


@dataclasses.dataclass(frozen=True)
class Request:
    """Opens stream `stream_id` (odd, increasing, chosen by the edge) with an HTTP request head. The body follows
    in DATA frames unless END_STREAM is set. `target` is the path with its query string."""

    KIND: ClassVar[Kind] = Kind.REQUEST
    stream_id: int
    method: str
    scheme: str
    authority: str
    target: str
    headers: list[tuple[bytes, bytes]] = dataclasses.field(default_factory=list)
    end_stream: bool = False
    websocket: bool = False

    def payload(self) -> bytes:
        method, scheme = self.method.encode("latin-1"), self.scheme.encode("latin-1")
        authority, target = self.authority.encode("latin-1"), self.target.encode("latin-1")
        if len(method) > 0xFF or len(scheme) > 0xFF or len(authority) > 0xFFFF or len(target) > 0xFFFF:
            raise ProtocolError("REQUEST field too long")
        parts = [_U8.pack(len(method)), method, _U8.pack(len(scheme)), scheme]
        parts += [_U16.pack(len(authority)), authority, _U16.pack(len(target)), target]
        _pack_headers(self.headers, parts)
        return b"".join(parts)

    def flags(self) -> int:
        return (_END_STREAM if self.end_stream else 0) | (_WEBSOCKET if self.websocket else 0)

    @classmethod
    def parse(cls, stream_id: int, flags: int, payload: bytes) -> Request:
        (method, scheme, authority, target), headers = _parse_head(payload, "REQUEST", _REQUEST_PREFIX)
        method, scheme = method.decode("latin-1"), scheme.decode("latin-1")
        authority, target = authority.decode("latin-1"), target.decode("latin-1")
        if not method:
            raise ProtocolError("REQUEST without a method")
        message = _new(cls)
        fields = message.__dict__
        fields["stream_id"] = stream_id
        fields["method"] = method
        fields["scheme"] = scheme
        fields["authority"] = authority
        fields["target"] = target
        fields["headers"] = headers
        fields["end_stream"] = bool(flags & _END_STREAM)
        fields["websocket"] = bool(flags & _WEBSOCKET)
        return message


@dataclasses.dataclass(frozen=True)
class Response:
    """The response head of a stream (status u16, headers). 101 accepts a WEBSOCKET request."""

    KIND: ClassVar[Kind] = Kind.RESPONSE
    stream_id: int
    status: int
    headers: list[tuple[bytes, bytes]] = dataclasses.field(default_factory=list)
    end_stream: bool = False

    def payload(self) -> bytes:
        return response_payload(self.status, self.headers)

    def flags(self) -> int:
        return _END_STREAM if self.end_stream else 0

    @classmethod
    def parse(cls, stream_id: int, flags: int, payload: bytes) -> Response:
        (status,), headers = _parse_head(payload, "RESPONSE", _RESPONSE_PREFIX)
        if not 100 <= status <= 999:
            raise ProtocolError("RESPONSE status out of range")
        message = _new(cls)
        fields = message.__dict__
        fields["stream_id"] = stream_id
        fields["status"] = status
        fields["headers"] = headers
        fields["end_stream"] = bool(flags & _END_STREAM)
        return message


_RESPONSE_PREFIX = (_U16,)


def response_payload(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The payload of `Response(_, status, headers)`, without building one (the connector's per-response path)."""
    if not 100 <= status <= 999:
        raise ProtocolError("RESPONSE status out of range")
    parts = [_U16.pack(status)]
    _pack_headers(headers, parts)
    return b"".join(parts)


@dataclasses.dataclass(frozen=True)
class Data:
    """Body bytes (the raw payload; at most MAX_DATA_CHUNK per frame is recommended). Counts against the window."""

    KIND: ClassVar[Kind] = Kind.DATA
    stream_id: int
    data: bytes
    end_stream: bool = False

    def payload(self) -> bytes:
        return self.data

    def flags(self) -> int:
        return _END_STREAM if self.end_stream else 0

    @classmethod
    def parse(cls, stream_id: int, flags: int, payload: bytes) -> Data:
        message = _new(cls)
        fields = message.__dict__
        fields["stream_id"] = stream_id
        fields["data"] = payload
        fields["end_stream"] = bool(flags & _END_STREAM)
        return message


@dataclasses.dataclass(frozen=True)
class Reset:
    """Aborts a stream in both directions: u32 ResetCode, then an optional UTF-8 message."""

    KIND: ClassVar[Kind] = Kind.RESET
    stream_id: int
    code: int
    message: str = ""

    def payload(self) -> bytes:
        return _U32.pack(self.code) + self.message.encode("utf-8")[:1024]

    def flags(self) -> int:
        return 0

    @classmethod
    def parse(cls, stream_id: int, flags: int, payload: bytes) -> Reset:
        if len(payload) < 4:
            raise ProtocolError("RESET payload is truncated")
        (code,) = _U32.unpack_from(payload)
        try:
            message = payload[4:].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("RESET message is not UTF-8")
        return cls(stream_id, code, message)


@dataclasses.dataclass(frozen=True)
class Window:
    """Grants the peer `increment` more payload bytes on a stream (u32, 1 .. MAX_WINDOW)."""

    KIND: ClassVar[Kind] = Kind.WINDOW
    stream_id: int
    increment: int

    def payload(self) -> bytes:
        if not 1 <= self.increment <= MAX_WINDOW:
            raise ProtocolError("WINDOW increment out of range")
        return _U32.pack(self.increment)

    def flags(self) -> int:
        return 0

    @classmethod
    def parse(cls, stream_id: int, flags: int, payload: bytes) -> Window:
        if len(payload) != 4:
            raise ProtocolError(
                "WINDOW payload is truncated" if len(payload) < 4 else "WINDOW payload has trailing bytes"
            )
        (increment,) = _U32.unpack(payload)
        if not 1 <= increment <= MAX_WINDOW:
            raise ProtocolError("WINDOW increment out of range")
        return cls(stream_id, increment)


@dataclasses.dataclass(frozen=True)
class WsMessage:
    """One websocket message on an upgraded stream (WS_BINARY: binary, else text). With END_STREAM the payload
    is instead the websocket close: u16 close code and a UTF-8 reason, or empty."""

    KIND: ClassVar[Kind] = Kind.WS_MESSAGE
    stream_id: int
    data: bytes
    binary: bool = True
    end_stream: bool = False

    def payload(self) -> bytes:
        return self.data

    def flags(self) -> int:
        return (_WS_BINARY if self.binary else 0) | (_END_STREAM if self.end_stream else 0)

    @classmethod
    def parse(cls, stream_id: int, flags: int, payload: bytes) -> WsMessage:
        if flags & _END_STREAM and len(payload) == 1:
            raise ProtocolError("WS_MESSAGE close payload is truncated")
        return cls(stream_id, payload, binary=bool(flags & _WS_BINARY), end_stream=bool(flags & _END_STREAM))

    @classmethod
    def close(cls, stream_id: int, code: int = 1000, reason: str = "") -> WsMessage:
        return cls(stream_id, _U16.pack(code) + reason.encode("utf-8")[:123], end_stream=True)

    def close_code(self) -> tuple[int, str]:
        """(code, reason) of a closing message; (1005, "") when it carries none, as RFC 6455 says."""
        if len(self.data) < 2:
            return 1005, ""
        return _U16.unpack_from(self.data)[0], self.data[2:].decode("utf-8", "replace")


CONTROL_MESSAGES: dict[Kind, type[ControlMessage]] = {
    cls.KIND: cls for cls in (Hello, Welcome, Config, ConfigAck, Ping, Pong, Drain, Error)
}
DATA_MESSAGES = {cls.KIND: cls for cls in (Request, Response, Data, Reset, Window, WsMessage)}
_KINDS = {int(kind): kind for kind in Kind}
StreamMessage = Union[Request, Response, Data, Reset, Window, WsMessage]
Message = Union[ControlMessage, StreamMessage]


# --------------------------------------------------------------------------------------------------------------
# Encoding and decoding.
# --------------------------------------------------------------------------------------------------------------


def encode_frame(kind: int, payload: bytes = b"", *, stream_id: int = 0, flags: int = 0) -> bytes:
    if len(payload) > MAX_PAYLOAD_SIZE:
        raise ProtocolError(f"{Kind(kind).name} payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_SIZE}")
    return HEADER.pack(PROTOCOL_VERSION, kind, flags, stream_id) + payload


def encode(message: Message) -> bytes:
    """The websocket binary message for `message`."""
    if isinstance(message, ControlMessage):
        payload = json.dumps(message.to_dict(), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return encode_frame(message.KIND, payload.encode("utf-8"))
    return encode_frame(message.KIND, message.payload(), stream_id=message.stream_id, flags=message.flags())


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode(frame: bytes | bytearray | memoryview) -> Message:
    """One websocket binary message -> its typed message. Raises ProtocolError for anything malformed, including a
    BATCH (a receiver that advertised `batch` reads messages with `decode_many`)."""
    if len(frame) < HEADER_SIZE:
        raise ProtocolError(f"frame of {len(frame)} bytes is shorter than the {HEADER_SIZE}-byte header")
    if len(frame) > MAX_FRAME_SIZE:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_SIZE}")
    version, kind_value, flags, stream_id = HEADER.unpack_from(frame)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {version}")
    kind = _KINDS.get(kind_value)
    if kind is None:
        raise ProtocolError(f"unknown message kind {kind_value}")
    if flags & ~KNOWN_FLAGS:
        raise ProtocolError(f"{kind.name} has unknown flags {flags:#06x}")
    if kind_value == _BATCH:
        raise ProtocolError("BATCH where a single frame was expected")
    payload = bytes(frame[HEADER_SIZE:])
    if kind_value < 16:
        if stream_id != 0 or flags:
            raise ProtocolError(f"{kind.name} must travel on stream 0 without flags")
        try:
            data = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ProtocolError(f"{kind.name} payload is not valid UTF-8 JSON")
        return CONTROL_MESSAGES[kind].from_dict(data)
    if stream_id == 0:
        raise ProtocolError(f"{kind.name} must travel on a stream >= 1")
    return DATA_MESSAGES[kind].parse(stream_id, flags, payload)


# --------------------------------------------------------------------------------------------------------------
# BATCH: several frames in one websocket message (feature `batch`).
#
# A sender with many frames ready at once (the edge with requests of many visitors, the connector with the
# responses of many streams) saves a websocket message, and on the server a trip through the ASGI server, per
# frame. Payload: one or more (u32 length, frame) pairs, each frame a complete one (header and payload) that is
# not itself a BATCH; stream 0, no flags; the whole message stays within MAX_FRAME_SIZE. Sent only to a peer
# that advertised `batch` (the connector in HELLO.features, the server in WELCOME.features); old peers get one
# frame per message, as before.
# --------------------------------------------------------------------------------------------------------------

_BATCH = int(Kind.BATCH)
_BATCH_HEADER = HEADER.pack(PROTOCOL_VERSION, _BATCH, 0, 0)
_pack_u32 = _U32.pack


def encode_batches(frames: list[bytes]) -> list[bytes]:
    """Websocket messages carrying `frames` in order: BATCHes of at most MAX_FRAME_SIZE bytes; a frame that would
    travel alone (or that cannot fit a BATCH) is sent as it is."""
    messages: list[bytes] = []
    group: list[bytes] = []
    size = HEADER_SIZE
    limit = MAX_FRAME_SIZE
    for frame in frames:
        cost = 4 + len(frame)
        if size + cost > limit and group:
            messages.append(_close_batch(group))
            group, size = [], HEADER_SIZE
        if HEADER_SIZE + cost > limit:
            messages.append(frame)
            continue
        group.append(frame)
        size += cost
    if group:
        messages.append(_close_batch(group))
    return messages


def _close_batch(group: list[bytes]) -> bytes:
    if len(group) == 1:
        return group[0]
    parts = [_BATCH_HEADER]
    for frame in group:
        parts.append(_pack_u32(len(frame)))
        parts.append(frame)
    return b"".join(parts)


def decode_many(message: bytes | bytearray | memoryview) -> list[Message]:
    """The frames of one websocket binary message: a BATCH's, in order, or the message's single frame."""
    if len(message) < HEADER_SIZE or message[1] != _BATCH:
        return [decode(message)]
    return [decode(frame) for frame in split_frames(message)]  # a nested BATCH is refused by decode()


def split_frames(message: bytes | bytearray | memoryview) -> list[memoryview]:
    """The raw frames of one websocket binary message, undecoded (a relay rewrites their stream ids): a BATCH's, in
    order, or the message itself. Raises ProtocolError for a malformed BATCH; each frame is checked by `decode()`
    or by its reader."""
    view = memoryview(message)
    if len(message) < HEADER_SIZE or message[1] != _BATCH:
        return [view]
    if len(message) > MAX_FRAME_SIZE:
        raise ProtocolError(f"frame of {len(message)} bytes exceeds {MAX_FRAME_SIZE}")
    version, _kind, flags, stream_id = HEADER.unpack_from(message)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {version}")
    if flags or stream_id:
        raise ProtocolError("BATCH must travel on stream 0 without flags")
    end = len(message)
    pos = HEADER_SIZE
    out: list[memoryview] = []
    unpack = _U32.unpack_from
    while pos < end:
        if pos + 4 > end:
            raise ProtocolError("BATCH payload is truncated")
        (size,) = unpack(message, pos)
        pos += 4
        if pos + size > end:
            raise ProtocolError("BATCH payload is truncated")
        if size < HEADER_SIZE:
            raise ProtocolError(f"frame of {size} bytes is shorter than the {HEADER_SIZE}-byte header")
        out.append(view[pos : pos + size])
        pos += size
    if not out:
        raise ProtocolError("empty BATCH")
    return out
