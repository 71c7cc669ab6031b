"""The one session interface of the data plane: where the edge sends a request for a tunnel.

Two kinds implement it. `ConnectorSession` (dataplane/sessions.py) is a connector's websocket held by this process;
`PeerSession` (dataplane/peers.py) is a tunnel held by another instance, reached over the peer link to it. The
hub's `pick_session(tunnel_id, exclude=...)` returns either (a local connection first), so the edge never asks
which: it opens a stream, frames the request on it and reads the response (dataplane/streams.py).

`open_stream()` takes no scope: the edge frames the REQUEST itself, straight from the ASGI scope's bytes (measured
per request, docs/benchmarks.md "Edge"), with `request_prefix` first (a peer session's `:tunnel` pseudo-header;
empty for a connector's connection, which carries one tunnel)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any, Protocol, runtime_checkable

from dataplane.streams import EdgeStream

# The stream a session opens: one proxied request, with its flow control (the same class for both kinds).
Stream = EdgeStream


@runtime_checkable
class Session(Protocol):
    """A connection that carries a tunnel's streams (local connector connection or peer link)."""

    tunnel_id: uuid.UUID

    @property
    def request_prefix(self) -> tuple[tuple[bytes, bytes], ...]:
        """Headers put first in every REQUEST frame the edge builds for a stream of this session."""
        ...

    @property
    def draining(self) -> bool:
        """No new streams go here (a connector that sent DRAIN; a peer link that is down)."""
        ...

    @property
    def carries_streams(self) -> bool:
        """It takes new streams now: it serves streams, is not draining and not closed."""
        ...

    @property
    def streams(self) -> dict[int, Stream]: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def advertises(self, feature: str) -> bool:
        """Whether the far end speaks `feature` (connector/protocol.py FEATURE_*) on this session."""
        ...

    def open_stream(self) -> Stream:
        """A new stream (a fresh odd id); failed at once if the session was lost meanwhile."""
        ...

    def queue_frame(self, frame: bytes) -> None:
        """An encoded data-plane frame, sent with the others of this event-loop turn."""
        ...

    async def send_frame(self, frame: bytes) -> None:
        """queue_frame(), then wait while the session's outgoing buffer is above its high-water mark."""
        ...

    async def send(self, message: Any) -> None:
        """One protocol message (connector/protocol.py), encoded."""
        ...

    def spawn(self, coroutine: Any) -> None:
        """Run a task tied to this session (kept referenced until done)."""
        ...

    def close(self, code: int, reason: str) -> Awaitable[None]:
        """End the session: a connector's websocket is closed with `code` (protocol.CloseCode); a peer session
        resets its tunnel's streams on the link, which stays up for the peer's other tunnels."""
        ...
