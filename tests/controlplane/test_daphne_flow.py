"""edge/daphne_flow.py: daphne hands request bodies out as the application reads them, and send() of a
response body waits while the transport's buffer is full. Measured through real processes in
tests/edge/test_edge_e2e.py (upload, stalled download); here the pieces against the installed daphne."""

from __future__ import annotations

import asyncio
import io

import pytest

from edge import daphne_flow


class FakeRequest:
    def __init__(self, body: bytes = b"") -> None:
        self.content = io.BytesIO(body)
        self.channel = FakeChannel()
        self.finished = False
        self.producer = None

    def registerProducer(self, producer, streaming):  # noqa: N802
        assert streaming and self.producer is None
        self.producer = producer

    def unregisterProducer(self):  # noqa: N802
        self.producer = None


class FakeChannel:
    _waitingForTransport = False


def test_the_application_controlplane_serves_is_served_by_the_patched_daphne():
    from daphne.http_protocol import WebRequest
    from daphne.server import Server

    import controlplane.asgi  # noqa: F401  (installs the patches)

    assert Server.create_application.__module__ == "edge.daphne_flow"
    assert Server.handle_reply.__module__ == "edge.daphne_flow"
    assert WebRequest.__init__.__module__ == "edge.daphne_flow"


async def test_the_spooled_body_is_read_chunk_by_chunk_as_the_application_asks():
    body = bytes(range(256)) * 600  # 153,600 bytes
    request = FakeRequest(body)
    queue = daphne_flow.SpooledBodyQueue(request, chunk_size=65536)
    # daphne's own loop then reads from the current position: nothing is left for it to queue.
    assert request.content.read(8192) == b""
    queue.put_nowait({"type": "http.request", "body": b"", "more_body": False})
    assert queue.empty()

    messages = [await queue.get() for _ in range(3)]
    assert [len(m["body"]) for m in messages] == [65536, 65536, 153600 - 131072]
    assert [m["more_body"] for m in messages] == [True, True, False]
    assert b"".join(m["body"] for m in messages) == body

    queue.put_nowait({"type": "http.disconnect"})
    assert await asyncio.wait_for(queue.get(), 1) == {"type": "http.disconnect"}


async def test_a_body_of_whole_chunks_ends_with_an_empty_message_and_a_lost_connection_ends_the_body():
    request = FakeRequest(b"x" * 8)
    queue = daphne_flow.SpooledBodyQueue(request, chunk_size=4)
    assert (await queue.get())["more_body"] is True
    assert (await queue.get())["more_body"] is True
    assert await queue.get() == {"type": "http.request", "body": b"", "more_body": False}

    lost = FakeRequest(b"y" * 100)
    queue = daphne_flow.SpooledBodyQueue(lost, chunk_size=10)
    assert (await queue.get())["body"] == b"y" * 10
    lost.content.close()  # Twisted closes the content when the connection is lost
    queue.put_nowait({"type": "http.disconnect"})
    assert await asyncio.wait_for(queue.get(), 1) == {"type": "http.disconnect"}


async def test_send_waits_while_the_transport_is_full_and_not_after_the_connection_is_lost(monkeypatch):
    request = FakeRequest()
    await asyncio.wait_for(daphne_flow.wait_writable(request), 1)  # not paused: returns at once
    assert request.producer is None

    request.channel._waitingForTransport = True
    waiting = asyncio.ensure_future(daphne_flow.wait_writable(request))
    await asyncio.sleep(0.05)
    assert not waiting.done() and isinstance(request.producer, daphne_flow._Writable)
    request.channel._waitingForTransport = False
    request.producer.resumeProducing()  # Twisted: the buffer drained
    await asyncio.wait_for(waiting, 1)

    monkeypatch.setattr(daphne_flow, "WAIT_CHECK_SECONDS", 0.05)
    request.channel._waitingForTransport = True
    waiting = asyncio.ensure_future(daphne_flow.wait_writable(request))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    request.channel = None  # the connection is lost without a resume
    await asyncio.wait_for(waiting, 1)


@pytest.mark.parametrize("more", [True, False])
async def test_the_producer_is_released_before_the_last_body_message(monkeypatch, more):
    """Twisted's finish() logs an error for a producer left registered."""
    from daphne.http_protocol import WebRequest
    from daphne.server import Server

    import controlplane.asgi  # noqa: F401

    seen = []

    class Request(WebRequest):
        def __init__(self) -> None:  # no Twisted channel: only what handle_reply touches
            self.producer = daphne_flow._Writable()
            self.channel = FakeChannel()
            self.finished = False

        def unregisterProducer(self):  # noqa: N802
            self.producer = None

        def handle_reply(self, message):
            seen.append((message["type"], self.producer is None))

    server = Server.__new__(Server)
    request = Request()
    server.connections = {request: {}}
    await server.handle_reply(request, {"type": "http.response.body", "body": b"x", "more_body": more})
    assert seen == [("http.response.body", not more)]


@pytest.mark.parametrize("started", [True, False])
def test_an_application_error_after_the_head_closes_the_connection_instead_of_raising(started):
    """daphne's own answer (an error page) raised inside its application checker once the head was sent."""
    from daphne.http_protocol import WebRequest

    import controlplane.asgi  # noqa: F401

    events = []

    class Request(WebRequest):
        def __init__(self) -> None:
            self._response_started = started
            self.channel = FakeChannel()
            self.finished = False

        def loseConnection(self):  # noqa: N802
            events.append("closed")

        def basic_error(self, status, status_text, body):
            events.append(status)

    Request().handle_exception(RuntimeError("cut"))
    assert events == (["closed"] if started else [500])


@pytest.mark.parametrize(
    ("message", "sent"),
    [
        ({"type": "websocket.close", "code": 1001, "reason": "going away"}, ("close", 1001, b"going away")),
        ({"type": "websocket.close", "code": 1011}, ("close", 1011, None)),
        ({"type": "websocket.close", "code": 4001, "reason": "é" * 100}, ("close", 4001, ("é" * 61).encode())),
        ({"type": "websocket.close", "code": 1006}, ("close", 1000, None)),  # reserved: never on the wire
        ({"type": "websocket.close"}, ("close", 1000, None)),
        ({"type": "websocket.send", "bytes": b""}, ("send", b"", True)),
        ({"type": "websocket.send", "text": ""}, ("send", "", False)),
        ({"type": "websocket.send", "text": "hi"}, ("send", "hi", False)),
    ],
)
def test_websocket_closes_carry_any_server_code_and_the_reason_and_empty_messages_are_sent(message, sent):
    """autobahn's sendClose() raises for codes other than 1000 and 3000-4999, and daphne dropped reasons and
    empty messages."""
    from daphne.ws_protocol import WebSocketProtocol

    import controlplane.asgi  # noqa: F401

    out = []

    class Socket(WebSocketProtocol):
        def __init__(self) -> None:
            self.state = self.STATE_OPEN

        def sendCloseFrame(self, code=None, reasonUtf8=None, isReply=False):  # noqa: N802, N803
            out.append(("close", code, reasonUtf8))

        def serverSend(self, content, binary=False):  # noqa: N802
            out.append(("send", content, binary))

    Socket().handle_reply(message)
    assert out == [sent]


@pytest.mark.parametrize("asks", [True, False])
async def test_a_websocket_send_that_asks_for_it_waits_while_the_transport_is_full(asks):
    """Only on request (the edge's sends to visitors): the hub's sends to connectors come from shared loops."""
    from daphne.server import Server
    from daphne.ws_protocol import WebSocketProtocol

    import controlplane.asgi  # noqa: F401

    class Channel:  # the HTTP channel that carried the upgrade: still the transport's producer
        _waitingForTransport = True
        _requestProducer = None

        def registerProducer(self, producer, streaming):  # noqa: N802
            self._requestProducer = producer

    class Transport:
        disconnected = False
        producer = Channel()

    class Socket(WebSocketProtocol):
        def __init__(self) -> None:
            self.transport = Transport()

        def handle_reply(self, message):
            pass

    server = Server.__new__(Server)
    socket = Socket()
    server.connections = {socket: {}}
    message = {"type": "websocket.send", "bytes": b"x"}
    if asks:
        message[daphne_flow.WAIT_WRITABLE] = True
    sending = asyncio.ensure_future(server.handle_reply(socket, message))
    await asyncio.sleep(0.05)
    assert sending.done() is not asks
    if asks:
        channel = socket.transport.producer
        channel._waitingForTransport = False
        channel._requestProducer.resumeProducing()
        await asyncio.wait_for(sending, 1)
