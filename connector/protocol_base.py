"""The connector wire protocol's foundations (connector/protocol.py is the protocol; import it from there): the frame
header, the sizes and windows, the frame kinds and flags, the close and reset codes, and `ProtocolError`.
Standard library only, Python >= 3.9, imported by the server too."""

from __future__ import annotations

import enum
import struct

__all__ = [
    "CLOSE_CODE_TEXT",
    "CONTROL_KINDS",
    "DATA_KINDS",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "FEATURE_BATCH",
    "FEATURE_STREAMS",
    "HEADER",
    "HEADER_SIZE",
    "HEARTBEAT_MISSES",
    "INITIAL_WINDOW",
    "KNOWN_FLAGS",
    "MAX_DATA_CHUNK",
    "MAX_FRAME_SIZE",
    "MAX_PAYLOAD_SIZE",
    "MAX_STREAM_ID",
    "MAX_WINDOW",
    "PROTOCOL_VERSION",
    "REFUSAL_CLOSE_CODES",
    "WEBSOCKET_PATH",
    "CloseCode",
    "Flags",
    "Kind",
    "ProtocolError",
    "ResetCode",
]

PROTOCOL_VERSION = 1
# The websocket path the server serves; the tunnel token travels in `Authorization: Bearer <token>`.
WEBSOCKET_PATH = "/connector/v1"

HEADER = struct.Struct("!BBHI")
HEADER_SIZE = HEADER.size
# Largest websocket message either side accepts (header included). Bigger messages are refused by the websocket
# layer (close 1009) before they are buffered.
MAX_FRAME_SIZE = 1024 * 1024
MAX_PAYLOAD_SIZE = MAX_FRAME_SIZE - HEADER_SIZE
# Bodies are sent in DATA frames of at most this many bytes, so that one large body never delays the frames of
# other streams by more than one chunk on the shared connection (~1 ms at the 250 MiB/s one connection carries
# here). 256 KiB rather than 64: a quarter of the per-frame work on both sides, measured in bench/edge (interleaved,
# 4 pairs): 100 MiB download 186 -> 233 MiB/s, upload 316 -> 450 MiB/s. Receivers accept any size within the window
# and MAX_FRAME_SIZE, so peers with another chunk size interoperate.
MAX_DATA_CHUNK = 256 * 1024
# Per-stream flow control: each side may send this many DATA/WS_MESSAGE payload bytes on a new stream before it
# must wait for WINDOW credit from the receiver.
INITIAL_WINDOW = 256 * 1024
MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**32 - 1

# Seconds between heartbeats unless WELCOME says otherwise; a peer silent for HEARTBEAT_MISSES intervals is dead.
DEFAULT_HEARTBEAT_INTERVAL = 10.0
HEARTBEAT_MISSES = 3


class Kind(enum.IntEnum):
    """Message kinds. 1-15 are control messages (stream 0, JSON); 16-31 are the data plane (stream >= 1)."""

    HELLO = 1  # connector -> server, first frame on every connection
    WELCOME = 2  # server -> connector, answer to HELLO: the connection is registered
    CONFIG = 3  # server -> connector: a configuration version to apply
    CONFIG_ACK = 4  # connector -> server: outcome of a CONFIG
    PING = 5  # either way; answered by PONG
    PONG = 6
    DRAIN = 7  # either way: open no new streams on this connection; it closes once in-flight streams finish
    ERROR = 8  # either way: a non-fatal error report (fatal ones are a close code + reason)

    REQUEST = 16  # edge -> connector: opens a stream with an HTTP request head
    RESPONSE = 17  # connector -> edge: the response head of a stream
    DATA = 18  # either way: body bytes of a stream
    RESET = 19  # either way: abort a stream
    WINDOW = 20  # either way: flow-control credit for a stream
    WS_MESSAGE = 21  # either way: one websocket message on an upgraded stream

    BATCH = 32  # either way, only to a peer advertising the `batch` feature: several frames in one message


CONTROL_KINDS = frozenset(kind for kind in Kind if kind < 16)
DATA_KINDS = frozenset(kind for kind in Kind if 16 <= kind < 32)
# Features a peer may advertise (HELLO.features from the connector, WELCOME.features from the server).
FEATURE_STREAMS = "streams"  # the connector serves data-plane streams
FEATURE_BATCH = "batch"  # the peer accepts BATCH messages


class Flags(enum.IntFlag):
    NONE = 0
    END_STREAM = 0x1  # REQUEST/RESPONSE/DATA/WS_MESSAGE: the sender sends nothing more on this stream
    WS_BINARY = 0x2  # WS_MESSAGE: binary message (text otherwise)
    WEBSOCKET = 0x4  # REQUEST: a websocket upgrade; RESPONSE 101 switches the stream to WS_MESSAGE frames


KNOWN_FLAGS = int(Flags.END_STREAM | Flags.WS_BINARY | Flags.WEBSOCKET)


class CloseCode(enum.IntEnum):
    """Websocket close codes. 4xxx are ours; the reason text carries a human-readable explanation."""

    NORMAL = 1000
    GOING_AWAY = 1001  # drained shutdown (either side), or server restarting
    PROTOCOL_ERROR = 1002  # websocket-level violation (bad framing)
    INVALID_DATA = 1007  # e.g. a text message that is not UTF-8
    MESSAGE_TOO_BIG = 1009  # a message larger than MAX_FRAME_SIZE
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    INVALID_TOKEN = 4001  # malformed token, unknown tunnel, or wrong secret
    TOKEN_REFUSED = 4003  # the token was rotated (or the tunnel may no longer connect)
    PROTOCOL_VIOLATION = 4008  # garbled frame, unknown kind, invalid payload, wrong sequencing
    DISCONNECTED = 4009  # superseded by a newer connection with the same connector id + index, or forced
    TUNNEL_DELETED = 4010
    TOO_MANY_CONNECTIONS = 4029  # replica/connection limit reached


# What each close code means, for logs when the peer sent no reason (daphne, for one, drops close reasons: a server
# that wants the connector to log its own words sends an ERROR frame before closing).
CLOSE_CODE_TEXT = {
    CloseCode.NORMAL: "closed normally",
    CloseCode.GOING_AWAY: "going away",
    CloseCode.PROTOCOL_ERROR: "websocket protocol error",
    CloseCode.INVALID_DATA: "invalid data",
    CloseCode.MESSAGE_TOO_BIG: "message too big",
    CloseCode.INTERNAL_ERROR: "internal server error",
    CloseCode.SERVICE_RESTART: "service restarting",
    CloseCode.INVALID_TOKEN: "the tunnel token is not valid (unknown tunnel or malformed token)",
    CloseCode.TOKEN_REFUSED: "the tunnel token was refused (wrong or rotated secret)",
    CloseCode.PROTOCOL_VIOLATION: "protocol violation",
    CloseCode.DISCONNECTED: "disconnected: superseded by a newer connection, or by an administrator",
    CloseCode.TUNNEL_DELETED: "the tunnel was deleted",
    CloseCode.TOO_MANY_CONNECTIONS: "too many connections for this tunnel",
}

# Close codes after which reconnecting soon cannot help: the connector still retries (forever), at its longest
# backoff, so that fixing the server side (e.g. restoring a tunnel) heals it without a restart.
REFUSAL_CLOSE_CODES = frozenset({CloseCode.INVALID_TOKEN, CloseCode.TOKEN_REFUSED, CloseCode.TUNNEL_DELETED})


class ResetCode(enum.IntEnum):
    NO_ERROR = 0
    CANCEL = 1  # the sender no longer wants the stream (e.g. the visitor went away)
    REFUSED_STREAM = 2  # not processed at all: the edge may retry it on another connection
    PROTOCOL_ERROR = 3
    FLOW_CONTROL_ERROR = 4  # the peer sent more than its window
    INTERNAL_ERROR = 5
    ORIGIN_ERROR = 6  # the origin failed after the response head was sent
    TIMEOUT = 7


class ProtocolError(ValueError):
    """A frame or message that breaks the protocol. The receiver closes with `close_code` and `reason`."""

    close_code = CloseCode.PROTOCOL_VIOLATION

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:120]  # websocket close reasons are limited to 123 bytes
