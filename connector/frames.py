"""What the connector's data-plane streams share: the frame kinds and flags as plain ints (the hot path compares
ints, not enums), the header packers, the WINDOW batching threshold, and which headers never cross the tunnel."""

from __future__ import annotations

import struct

from . import protocol
from .protocol import HEADER, INITIAL_WINDOW, Kind

GRANT_THRESHOLD = INITIAL_WINDOW // 2  # WINDOW frames are sent in batches of at least half a window

REQUEST, RESPONSE, DATA, RESET, WINDOW, WS_MESSAGE = (
    int(Kind.REQUEST),
    int(Kind.RESPONSE),
    int(Kind.DATA),
    int(Kind.RESET),
    int(Kind.WINDOW),
    int(Kind.WS_MESSAGE),
)
KIND_NAMES = {int(kind): kind.name for kind in Kind}
END = int(protocol.Flags.END_STREAM)
BINARY = int(protocol.Flags.WS_BINARY)
pack_header = HEADER.pack
U16 = struct.Struct("!H")
U32 = struct.Struct("!I")

# Request headers never forwarded as received: the connector writes its own Host and framing; the rest are
# hop-by-hop (the edge already drops them; dropped again here because the origin connection is ours).
SKIP_REQUEST = frozenset(
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
SKIP_WS_REQUEST = SKIP_REQUEST | frozenset(
    {b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions", b"content-length"}
)
# Response headers not passed to the edge: the body is sent de-chunked, and the connection is ours.
SKIP_RESPONSE = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The request's Cf-Ray (the edge's request id), for logs both sides can be correlated with."""
    for name, value in headers:
        if name == b"cf-ray":
            return value.decode("latin-1")
    return "-"
