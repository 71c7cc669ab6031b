"""The edge: an ASGI application that carries requests for public hostnames down their tunnel.

Per request: Host (edge/headers.py) → route (a dict lookup in the per-process table) → the admission step
(edge/admission.py) → a session of the tunnel (dataplane/session.py: a connection held by this process, or the link
to the instance holding one) → a stream on it (dataplane/streams.py) → the connector calls the origin → the response
streams back. Nothing on this path touches Django's request machinery, the database or the channel layer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from django.conf import settings

from access.events import AccessChanged
from connector import protocol
from dataplane.hub import Hub, current_hub, get_hub
from dataplane.streams import EdgeStream, StreamReset
from edge.admission import Admit, Gate
from edge.daphne_flow import WAIT_WRITABLE
from edge.errors import recorder as origin_errors
from edge.headers import (
    edge_settings,
    new_request_id,
    origin_headers,
    request_host,
    response_headers,
    valid_host,
)
from edge.pages import error_body, wants_json
from edge.routes import Route, RouteTable, load_routes
from tunnels.events import RoutesChanged

logger = logging.getLogger("edge")


class Edge:
    def __init__(self) -> None:
        self.routes = RouteTable()
        self.gate = Gate()
        self._subscribed: Hub | None = None  # the hub this edge subscribed its events to

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "websocket":
            await self.websocket(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)

    # -- shared steps -----------------------------------------------------------------------------------------

    async def hub(self) -> Hub:
        hub = get_hub()
        await hub.ensure_started()
        if self._subscribed is not hub:
            self._subscribed = hub
            hub.subscribe(RoutesChanged, self._on_routes_changed)
            hub.subscribe(AccessChanged, self.gate.on_event)
        return hub

    async def _on_routes_changed(self, event: RoutesChanged) -> None:
        await self.reload_routes()

    async def reload_routes(self) -> None:
        hub = get_hub()
        await self.routes.refresh(lambda: hub.db(load_routes))

    async def route(self, host: str) -> Route | None:
        if self.routes.stale:
            await self.reload_routes()
        return self.routes.lookup(host)

    def request_id(self, hub: Hub) -> str:
        return new_request_id(hub.location)

    async def decide_access(
        self, hub: Hub, scope: dict[str, Any], route: Route, host: str, request_id: str
    ) -> Admit | tuple[int, list, bytes] | None:
        """The admission step (edge/admission.py), for HTTP and websocket alike: None forwards the request as is,
        Admit forwards it with the identity headers, a (status, headers, body) answers it (the login redirect,
        401, 403, or the edge's own /cdn-cgi/access/ pages)."""
        return await self.gate.admit(hub, scope, route.organisation_id, host, request_id)

    # -- HTTP -------------------------------------------------------------------------------------------------

    async def http(self, scope: dict[str, Any], receive, send, host: str | None = None, raw_host: bytes = b"") -> None:
        """One proxied request. Measured per request (docs/benchmarks.md, "Edge"), so it builds little: the REQUEST
        frame straight from the scope's bytes, a timer instead of wait_for(shield()), and a small body answered
        in one send once it is complete."""
        if host is None:
            host, raw_host = request_host(scope)
        if not valid_host(raw_host):
            return await self.fail(scope, send, new_request_id("edge"), "", 400, "The Host header is not a hostname.")
        hub = current_hub()
        if hub is None or hub is not self._subscribed:
            hub = await self.hub()
        request_id = new_request_id(hub.location)
        routes = self.routes
        route = await self.route(host) if routes.stale else routes.lookup(host)
        if route is None:
            detail = f"{host} is not a public hostname of any tunnel."
            return await self.fail(scope, send, request_id, host, 404, detail)
        admitted: tuple[tuple[bytes, bytes], ...] | None = None
        decision = await self.decide_access(hub, scope, route, host, request_id)
        if decision is not None:
            if not isinstance(decision, Admit):
                status, extra_headers, body = decision
                await send({"type": "http.response.start", "status": status, "headers": extra_headers})
                await send({"type": "http.response.body", "body": body})
                return None
            admitted = decision.headers
        session = hub.pick_session(route.tunnel_id)
        if session is None:
            detail = "No connector of this tunnel is connected."
            return await self.fail(scope, send, request_id, host, 530, detail, route)

        first = await receive()
        if first["type"] == "http.disconnect":
            return None
        body = first.get("body", b"")
        more = first.get("more_body", False)
        has_body = bool(body or more)
        target = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string")
        if query:
            target += b"?" + query
        method = scope["method"].encode("latin-1")
        scheme = b"https" if scope.get("scheme") == "https" else b"http"
        headers = origin_headers(scope, request_id, websocket=False)
        if admitted:
            headers += admitted
        # The visitor's side (uploads the body, then notices the visitor going away); its task starts at once for a
        # body, otherwise only for a request still open after WATCH_VISITOR_AFTER or a streamed response: most are
        # answered sooner, and a task per request was measurable (docs/benchmarks.md, "Edge").
        visitor = _Visitor(receive, body, more, hub.loop.create_future() if has_body else None)
        tried: set[int] | None = None  # id() of the connections tried, once a retry is considered
        try:
            while True:
                stream = visitor.stream = session.open_stream()
                try:
                    frame = protocol.request_frame(
                        stream.id,
                        method,
                        scheme,
                        raw_host,
                        target,
                        [*session.request_prefix, *headers] if session.request_prefix else headers,
                        end_stream=not has_body,
                    )
                except protocol.ProtocolError as exc:
                    stream.fail(protocol.ResetCode.PROTOCOL_ERROR, exc.reason)
                    detail = f"Cannot forward this request: {exc.reason}"
                    return await self.fail(scope, send, request_id, host, 400, detail)
                session.queue_frame(frame)
                try:
                    head = await visitor.response_head()
                except StreamReset as reset:
                    if visitor.gone:
                        return None  # nobody left to answer
                    tried = {id(session)} if tried is None else tried | {id(session)}
                    retry = None
                    if len(tried) < MAX_ATTEMPTS and _may_retry(reset, scope["method"], has_body):
                        retry = hub.pick_session(route.tunnel_id, exclude=tried)
                    if retry is None:
                        detail = reset.message or str(reset)
                        if reset.code == protocol.ResetCode.REFUSED_STREAM and (
                            hub.pick_session(route.tunnel_id, exclude=tried) is None
                        ):
                            # Refused unprocessed (a draining connector, or an instance it just left) and no other
                            # connection to try: no active connector, as before a connector arrives (530, not 502).
                            detail = f"No connector of this tunnel can take the request ({detail})."
                            return await self.fail(scope, send, request_id, host, 530, detail, route)
                        return await self.fail(scope, send, request_id, host, _status_for_reset(reset), detail, route)
                    logger.info("%s retried on another connection: %s", request_id, reset)
                    session = retry
                    continue
                break
            await send(
                {
                    "type": "http.response.start",
                    "status": head.status,
                    "headers": response_headers(head.headers, request_id),
                }
            )
            if head.end_stream:
                await send({"type": "http.response.body", "body": b""})
                return None
            while True:
                if visitor.task is None and not stream.complete:
                    visitor.start()  # a body that streams: a visitor who goes away must stop it
                if stream.complete:  # the rest of the body is here: one send, no WINDOW needed
                    await send({"type": "http.response.body", "body": stream.take_rest()})
                    return None
                try:
                    chunk = await stream.read()
                except StreamReset as reset:
                    if visitor.gone:
                        return None
                    logger.warning("%s stream reset after the response head: %s", request_id, reset)
                    # Finishing the response would make a cut body look complete (a chunked one gets its last
                    # chunk), and returning leaves the visitor waiting for the rest: an exception after the
                    # head is how ASGI asks the server to close the connection.
                    raise ResponseCut(f"{request_id}: the response was cut short: {reset}") from None
                if chunk is None:
                    await send({"type": "http.response.body", "body": b""})
                    return None
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await stream.consumed(len(chunk))
        finally:
            if visitor.task is not None or visitor.timer is not None:
                await visitor.stop()
            if stream.reset is None and stream.id in stream.session.streams and not stream._ended:
                with contextlib.suppress(Exception):
                    await stream.cancel()

    async def fail(
        self,
        scope: dict[str, Any],
        send,
        request_id: str,
        host: str,
        status: int,
        detail: str,
        route: Route | None = None,
    ) -> None:
        """The edge's own answer: a branded page, or JSON for API clients. The page keeps the reason of a failure
        on the tunnel's side from the visitor; it is recorded for the tunnel's members instead (edge/errors.py)."""
        if route is not None and status >= 500:
            _record(route, scope, request_id, host, status, detail)
        as_json = wants_json(dict(scope.get("headers") or ()))
        body, content_type = error_body(status, request_id, detail, as_json=as_json, host=host)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                    (b"cf-ray", request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        logger.info("%s %s %s -> %s %s", request_id, host, scope.get("path"), status, detail)

    # -- WebSocket passthrough --------------------------------------------------------------------------------

    async def websocket(self, scope: dict[str, Any], receive, send) -> None:
        hub = await self.hub()
        request_id = self.request_id(hub)
        host, raw_host = request_host(scope)
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return
        if not valid_host(raw_host):
            await send({"type": "websocket.close", "code": 1008})
            return
        route = await self.route(host)
        admitted: tuple[tuple[bytes, bytes], ...] | None = None
        if route is not None:
            decision = await self.decide_access(hub, scope, route, host, request_id)
            if decision is not None:
                if not isinstance(decision, Admit):
                    # Refused before the handshake completes: the visitor's client sees 403 (policy violation).
                    await send({"type": "websocket.close", "code": 1008})
                    return
                admitted = decision.headers
        session = hub.pick_session(route.tunnel_id) if route is not None else None
        if session is None:
            if route is not None:
                _record(route, scope, request_id, host, 530, "No connector of this tunnel is connected (websocket).")
            await send({"type": "websocket.close", "code": 1011 if route else 1008})
            return
        stream = session.open_stream()
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        headers = origin_headers(scope, request_id, websocket=True)
        if admitted:
            headers += admitted
        await session.send(
            protocol.Request(
                stream_id=stream.id,
                method="GET",
                scheme="https" if scope.get("scheme") == "wss" else "http",
                authority=raw_host.decode("latin-1"),
                target=target.decode("latin-1"),
                headers=headers,
                websocket=True,
            )
        )
        try:
            head = await asyncio.wait_for(asyncio.shield(stream.response), settings.EDGE_RESPONSE_TIMEOUT_SECONDS)
        except (TimeoutError, StreamReset) as exc:
            status = 504 if isinstance(exc, TimeoutError) else _status_for_reset(exc)
            reason = "the origin did not answer in time" if isinstance(exc, TimeoutError) else exc.message or str(exc)
            _record(route, scope, request_id, host, status, f"Websocket: {reason}")
            await send({"type": "websocket.close", "code": 1011})
            return
        if head.status != 101 or stream.ws_messages is None:
            await send({"type": "websocket.close", "code": 1011})
            await stream.cancel()
            return
        accept: dict[str, Any] = {"type": "websocket.accept"}
        for name, value in head.headers:
            if name.lower() == b"sec-websocket-protocol":
                accept["subprotocol"] = value.decode("latin-1")
        await send(accept)

        async def visitor_to_origin() -> None:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    code = message.get("code", 1000)
                    await session.send(protocol.WsMessage.close(stream.id, code if code < 5000 else 1000))
                    return
                binary = message.get("bytes") is not None
                data = message["bytes"] if binary else (message.get("text") or "").encode()
                if len(data) > protocol.MAX_PAYLOAD_SIZE:
                    # One message is one frame: what cannot be framed is refused as the connector refuses an
                    # origin's (1009), and costs this websocket only.
                    too_big = f"message larger than {protocol.MAX_PAYLOAD_SIZE} bytes"
                    await session.send(protocol.WsMessage.close(stream.id, 1009, too_big))
                    await send({"type": "websocket.close", "code": 1009, "reason": too_big})
                    return
                try:
                    await stream.send_ws_message(data, binary)
                except StreamReset:
                    await asyncio.Event().wait()  # origin_to_visitor delivers the reset's close and ends both

        async def origin_to_visitor() -> None:
            assert stream.ws_messages is not None
            while True:
                message = await stream.ws_messages.get()
                if message.end_stream:
                    code, reason = message.close_code()
                    await send(
                        {
                            "type": "websocket.close",
                            "code": code if code not in (1005, 1006) else 1000,
                            "reason": reason,
                        }
                    )
                    return
                # WAIT_WRITABLE: under daphne, send() returns once the visitor's socket can take more (uvicorn's
                # always does), so a visitor who stops reading holds back the stream, not the server's memory.
                if message.binary:
                    await send({"type": "websocket.send", "bytes": message.data, WAIT_WRITABLE: True})
                else:
                    text = message.data.decode("utf-8", "replace")
                    await send({"type": "websocket.send", "text": text, WAIT_WRITABLE: True})
                await stream.consumed(len(message.data))

        tasks = [asyncio.ensure_future(visitor_to_origin()), asyncio.ensure_future(origin_to_visitor())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await stream.cancel()


def _record(route: Route, scope: dict[str, Any], request_id: str, host: str, status: int, reason: str) -> None:
    origin_errors.record(
        organisation_id=route.organisation_id,
        tunnel_id=route.tunnel_id,
        request_id=request_id,
        hostname=host,
        status=status,
        reason=reason,
        method=scope.get("method") or "GET",
        path=scope.get("path") or "",
    )


class ResponseCut(Exception):
    """The stream failed after the response head was sent: the server must close the visitor's connection."""


# Requests that no connector has answered yet are tried on another connection of the tunnel, at most this many
# times in all, when that is safe: the connector refused the stream (REFUSED_STREAM: not processed at all, e.g.
# it was draining), or the connection was lost before any answer and the method is safe to repeat (as nginx's
# proxy_next_upstream does for idempotent requests). Only requests without a body: a body already streamed
# from the visitor cannot be sent twice.
MAX_ATTEMPTS = 3
WATCH_VISITOR_AFTER = 0.01  # seconds: see Edge.http
RETRY_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class _Visitor:
    """The visitor's side of one proxied HTTP request, for the whole exchange (all attempts): the request body within
    the connector's grant, then a watch for the visitor going away, which cancels the stream so that the connector
    drops the origin request and the tunnel carries nothing more for nobody (nothing else reads `receive()` while a
    response streams, and daphne's send() to a closed connection says nothing)."""

    __slots__ = ("body", "gone", "more", "receive", "stream", "task", "timer", "uploaded")

    def __init__(self, receive, body: bytes, more: bool, uploaded: asyncio.Future | None) -> None:
        self.receive = receive
        self.body = body
        self.more = more
        self.uploaded = uploaded  # with a body: done once all of it was handed to the connection
        self.stream: EdgeStream | None = None  # the latest attempt's
        self.gone = False
        self.task: asyncio.Future | None = None
        self.timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def response_head(self) -> protocol.Response:
        """The current stream's response head; StreamReset (TIMEOUT: a 504) once the origin has kept us waiting
        EDGE_RESPONSE_TIMEOUT_SECONDS. As nginx's proxy_read_timeout, the wait is counted from the end of the
        request: a body still being sent restarts it whenever some of it moves (a 1 GiB upload is not an origin
        timeout), and only an upload that makes no progress for the whole timeout (the origin stopped reading)
        ends it. Without a body: no timer of its own at first (_SlowWatch); one that is still unanswered after
        WATCH_VISITOR_AFTER starts the watch and arms the timeout."""
        stream = self.stream
        assert stream is not None
        timeout = edge_settings().response_timeout
        uploaded = self.uploaded
        if uploaded is not None:
            self.start()
            while not uploaded.done():
                sent = stream.sent
                done, _ = await asyncio.wait(
                    {stream.response, uploaded}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if stream.response in done:
                    return stream.response.result()
                if not done and stream.sent == sent:
                    stream.time_out(timeout)
                    return await stream.response
            self.timer = stream.session.loop.call_later(timeout, stream.time_out, timeout)
        elif self.task is None:
            watch = _slow_watch(stream.session.loop)
            watch.add(self)
            try:
                return await stream.response
            finally:
                watch.discard(self)
                if self.timer is not None:
                    self.timer.cancel()
                    self.timer = None
        else:
            self.timer = stream.session.loop.call_later(timeout, stream.time_out, timeout)
        try:
            return await stream.response
        finally:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None

    def slow(self) -> None:
        """Unanswered for WATCH_VISITOR_AFTER (up to twice that; _SlowWatch): watch the visitor, arm the timeout."""
        stream = self.stream
        if stream is None or stream.response.done():
            return
        self.start()
        timeout = edge_settings().response_timeout
        self.timer = stream.session.loop.call_later(timeout - WATCH_VISITOR_AFTER, stream.time_out, timeout)

    async def _run(self) -> None:
        receive, more, uploaded = self.receive, self.more, self.uploaded
        try:
            if uploaded is not None and not uploaded.done():
                stream = self.stream
                assert stream is not None
                await stream.send_body(self.body, end=not more)
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        break
                    more = message.get("more_body", False)
                    await stream.send_body(message.get("body", b""), end=not more)
                if not uploaded.done() and not more:
                    uploaded.set_result(None)
            while not more:
                if (await receive())["type"] == "http.disconnect":
                    break
        except StreamReset:
            return  # the stream failed: the request's task answers the visitor
        finally:
            if uploaded is not None and not uploaded.done():
                uploaded.set_result(None)
        self.gone = True
        if self.stream is not None:
            await self.stream.cancel(protocol.ResetCode.CANCEL, "the visitor went away")


class _SlowWatch:
    """Which bodiless requests are still unanswered after WATCH_VISITOR_AFTER, with one timer per period for all of
    them: a timer per request (call_later + cancel) cost 2.4 µs in uvloop, and most requests are answered sooner.
    Two generations: a request added during one period is due at the end of the next one, so its watch starts
    between one and two periods after it was sent."""

    __slots__ = ("current", "loop", "previous", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.current: dict[_Visitor, None] = {}
        self.previous: dict[_Visitor, None] = {}
        self.timer: asyncio.TimerHandle | None = None

    def add(self, visitor: _Visitor) -> None:
        self.current[visitor] = None
        if self.timer is None:
            self.timer = self.loop.call_later(WATCH_VISITOR_AFTER, self._tick)

    def discard(self, visitor: _Visitor) -> None:
        if visitor in self.current:
            del self.current[visitor]
        else:
            self.previous.pop(visitor, None)

    def _tick(self) -> None:
        due, self.previous, self.current = self.previous, self.current, {}
        self.timer = self.loop.call_later(WATCH_VISITOR_AFTER, self._tick) if self.previous else None
        for visitor in due:
            visitor.slow()


_watches: dict[int, _SlowWatch] = {}


def _slow_watch(loop: asyncio.AbstractEventLoop) -> _SlowWatch:
    """The watch of this event loop (one per loop: a process has one; tests start several, one after another)."""
    watch = _watches.get(id(loop))
    if watch is None or watch.loop is not loop:
        _watches.clear()  # a previous loop's, closed
        watch = _watches[id(loop)] = _SlowWatch(loop)
    return watch


def _may_retry(reset: StreamReset, method: str, has_body: bool) -> bool:
    if has_body:
        return False
    if reset.code == protocol.ResetCode.REFUSED_STREAM:
        return True
    return reset.connection_lost and method in RETRY_SAFE_METHODS


def _status_for_reset(reset: StreamReset) -> int:
    if reset.code == protocol.ResetCode.TIMEOUT:
        return 504
    if reset.code == protocol.ResetCode.REFUSED_STREAM:
        return 502
    return 502


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


edge_application = Edge()
