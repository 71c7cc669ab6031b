"""Bounded memory for request and response bodies under daphne (installed by controlplane/asgi.py).

daphne 4.2 (on Twisted) holds whole bodies in memory, which lets any visitor of a public hostname make the server
allocate as much as it sends or refuses to read (measured through the edge: +263 MiB of RSS for a 256 MiB
upload; a visitor who stops reading a download leaves the server buffering everything the origin sends):

* request bodies: Twisted spools a body to a temporary file (bodies over 100 kB) and daphne then reads all of it
  into the application's queue at once. Here the queue hands the spooled body out as the application asks for
  it, one chunk per `receive()`.
* form bodies: Twisted also reads a whole `application/x-www-form-urlencoded` or `multipart/form-data` POST body
  into memory to parse it into `request.args` (which daphne never uses), and answers 400 itself when it is not
  valid multipart: a body meant for an origin must reach it as it is. Turned off.
* an exception after the response head: daphne answers it with an error page whose `http.response.start` raises
  (the response has started) inside its once-a-second application checker, which then stops for good (no more
  reaping, no more timeouts), and the visitor's connection stays open waiting for the rest of the body. Here the
  connection is closed once what was sent is flushed, so the visitor sees the body cut short (ASGI servers close
  the connection when the application fails after the head; the edge relies on it for streams that fail).
* websocket closes: daphne sends `websocket.close` through autobahn's `sendClose()`, which raises for any code
  but 1000 and 3000-4999 (so 1001 "going away", 1008, 1009, 1011 from an origin or the edge left the visitor's
  socket open), and drops the reason. Here every code a server may send (RFC 6455 §7.4) goes out, with the
  reason. And `websocket.send` of an empty message is sent, not dropped.
* response bodies: `send()` writes to the Twisted transport, which buffers without limit. Here `send()` of a body
  chunk, and of a websocket message that asks for it (WAIT_WRITABLE), waits while the transport's buffer is full
  (Twisted pauses a registered push producer), as uvicorn's `send()` does, so the edge grants the connector more
  only as the visitor reads (docs/architecture.md). Measured: +241 MiB of server RSS in 3 s for a stalled
  download, +161 MiB for a stalled websocket.

Each patch replaces one small piece of daphne's (pinned) code; tests/controlplane/test_daphne_flow.py checks them
against the installed daphne, and tests/edge/test_edge_e2e.py measures the server's memory through the edge.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

# A `websocket.send` carrying this key waits like a body chunk (the edge's sends to visitors). Only on request:
# the hub's sends to connectors come from loops shared by every connection (heartbeats, config pushes), which
# one connector that stopped reading must not hold up.
WAIT_WRITABLE = "zt.wait_writable"
CHUNK_SIZE = 256 * 1024  # per receive(): the edge's DATA frame size (connector/protocol.py MAX_DATA_CHUNK)
WAIT_CHECK_SECONDS = 1.0  # a paused send() rechecks the connection this often (never waits on a dead one)

_installed = False


class SpooledBodyQueue(asyncio.Queue):
    """daphne's input queue for one HTTP request: body messages come from the request's spooled body as the
    application receives them; daphne's own body messages (all queued up front) are dropped."""

    def __init__(self, request: Any, chunk_size: int = CHUNK_SIZE) -> None:
        super().__init__()
        self.request = request
        self.chunk_size = chunk_size
        self.offset = 0
        self.body_done = False
        content = getattr(request, "content", None)
        if content is not None and not content.closed:
            content.seek(0, 2)  # daphne's loop that queues the whole body finds nothing left to read

    def put_nowait(self, item: Any) -> None:
        if isinstance(item, dict) and item.get("type") == "http.request":
            return  # the body is read from the spooled content in get()
        super().put_nowait(item)

    async def get(self) -> Any:
        if not self.body_done and self.empty():
            content = getattr(self.request, "content", None)
            if content is not None and not content.closed:
                content.seek(self.offset)
                chunk = content.read(self.chunk_size)
                self.offset += len(chunk)
                more = len(chunk) == self.chunk_size
                self.body_done = not more
                return {"type": "http.request", "body": chunk, "more_body": more}
            self.body_done = True  # the connection was lost: the disconnect message follows
        return await super().get()


class _Writable:
    """A push producer registered on a daphne request: Twisted pauses it while the transport's write buffer is
    full and resumes it once drained."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.event.set()

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's interface)
        self.event.clear()

    def resumeProducing(self) -> None:  # noqa: N802
        self.event.set()

    def stopProducing(self) -> None:  # noqa: N802
        self.event.set()


def _gone(request: Any) -> bool:
    return getattr(request, "channel", None) is None or request.finished or getattr(request, "_disconnected", False)


async def wait_writable(request: Any) -> None:
    """Return once the request's transport can take more (or the connection is gone)."""
    channel = getattr(request, "channel", None)
    if channel is None or not getattr(channel, "_waitingForTransport", False) or _gone(request):
        return
    producer = request.producer
    if producer is None:
        producer = _Writable()
        request.registerProducer(producer, True)
    elif not isinstance(producer, _Writable):
        return  # someone else's producer: not ours to wait on
    producer.pauseProducing()  # registered while the channel is already paused: Twisted does not tell it
    while not _gone(request) and getattr(request.channel, "_waitingForTransport", False):
        try:
            await asyncio.wait_for(producer.event.wait(), WAIT_CHECK_SECONDS)
        except TimeoutError:
            continue
        break


async def wait_websocket_writable(socket: Any) -> None:
    """The same for an upgraded connection: its transport still reports to the HTTP channel that carried the
    upgrade (the transport's registered producer), which forwards pause/resume to the producer registered on it."""
    transport = getattr(socket, "transport", None)
    channel = getattr(transport, "producer", None)
    if channel is None or not getattr(channel, "_waitingForTransport", False):
        return
    producer = getattr(channel, "_requestProducer", None)
    if producer is None:
        producer = _Writable()
        channel.registerProducer(producer, True)
    elif not isinstance(producer, _Writable):
        return
    producer.pauseProducing()
    while not getattr(transport, "disconnected", True) and getattr(channel, "_waitingForTransport", False):
        try:
            await asyncio.wait_for(producer.event.wait(), WAIT_CHECK_SECONDS)
        except TimeoutError:
            continue
        break


def _release(request: Any) -> None:
    if isinstance(getattr(request, "producer", None), _Writable) and getattr(request, "channel", None) is not None:
        request.unregisterProducer()


def sendable_close_code(code: Any) -> bool:
    """A close code a server may put on the wire (RFC 6455 §7.4.1 and the IANA registry): not 1004-1006/1015,
    which are reserved or only reported locally."""
    return isinstance(code, int) and (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999)


def install() -> None:
    """Patch daphne's server and request classes (once; only what the docstring lists)."""
    global _installed
    if _installed:
        return
    from daphne import http_protocol, server, ws_protocol

    web_request = http_protocol.WebRequest
    server_class = server.Server

    original_init = web_request.__init__

    def request_init(self, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> asyncio.Queue | None:
        # daphne 4.2's create_application, with the spooled-body queue for HTTP requests.
        assert "application_instance" not in self.connections[protocol]
        if scope.get("type") == "http" and isinstance(protocol, web_request):
            input_queue: asyncio.Queue = SpooledBodyQueue(protocol, max(CHUNK_SIZE, self.request_buffer_size))
        else:
            input_queue = asyncio.Queue()
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope, receive=input_queue.get, send=partial(self.handle_reply, protocol)
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(
            application_instance, loop=asyncio.get_event_loop()
        )
        return input_queue

    original_handle_reply = server_class.handle_reply

    async def handle_reply(self, protocol: Any, message: dict[str, Any]) -> None:
        if message.get(WAIT_WRITABLE) and isinstance(protocol, ws_protocol.WebSocketProtocol):
            await original_handle_reply(self, protocol, message)
            return await wait_websocket_writable(protocol)
        if message.get("type") != "http.response.body" or not isinstance(protocol, web_request):
            return await original_handle_reply(self, protocol, message)
        more = message.get("more_body", False)
        if not more:
            _release(protocol)  # Twisted's finish() complains about a producer still registered
        await original_handle_reply(self, protocol, message)
        if more:
            await wait_writable(protocol)
        return None

    original_handle_exception = web_request.handle_exception

    def handle_exception(self, exception: BaseException) -> None:
        if not self._response_started:
            original_handle_exception(self, exception)
        elif getattr(self, "channel", None) is not None and not self.finished:
            self.loseConnection()

    websocket_protocol = ws_protocol.WebSocketProtocol
    original_ws_handle_reply = websocket_protocol.handle_reply

    def ws_handle_reply(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in ("websocket.close", "websocket.send") and self.state != self.STATE_CONNECTING:
            if kind == "websocket.close":
                code = message.get("code") or 1000
                reason = (message.get("reason") or "").encode("utf-8")[:123].decode("utf-8", "ignore")
                self.sendCloseFrame(
                    code=code if sendable_close_code(code) else 1000, reasonUtf8=reason.encode() if reason else None
                )
                return None
            data, text = message.get("bytes"), message.get("text")
            if (data is None) != (text is None):
                self.serverSend(data if data is not None else text, data is not None)
                return None
        return original_ws_handle_reply(self, message)

    websocket_protocol.handle_reply = ws_handle_reply
    web_request.__init__ = request_init
    web_request.handle_exception = handle_exception
    server_class.create_application = create_application
    server_class.handle_reply = handle_reply
    _installed = True
