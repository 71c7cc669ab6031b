"""The connector's data plane at the protocol level: a fake edge (conftest.py) opens streams, real origins on
loopback answer (asyncio HTTP/1.1, a unix socket; TLS origins in test_origin_tls.py, websockets in
test_wsstream.py)."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from connector import protocol
from connector.protocol import INITIAL_WINDOW, Kind, ResetCode

from .dataplane_harness import (
    Connector,
    Origin,
    closed_port,
    config_for,
    headers_of,
    respond,
    rules,
    standard_origin,
    streams_body,
    wait_until,
)

# ------------------------------------------------------------------------------------------------ HTTP basics


async def test_get_is_proxied_and_the_connection_is_kept_alive(edge, origin):
    async with Connector(edge, config_for(origin)) as connector:
        first = await connector.driver.fetch("/hello")
        second = await connector.driver.fetch("/hello")
    for result in (first, second):
        assert result.response.status == 200 and result.ended and result.reset is None
        assert bytes(result.body) == b"x" * 1024
        assert headers_of(result.response)[b"content-length"] == [b"1024"]
    assert origin.connections == 1  # the second request reused the pooled connection


async def test_the_origin_receives_the_request_as_the_edge_sent_it(edge, origin):
    async with Connector(edge, config_for(origin)) as connector:
        result = await connector.driver.fetch(
            "/headers?a=1&b=%20",
            host="app.example.com:8443",
            headers=[(b"x-custom", b"v"), (b"connection", b"close"), (b"te", b"trailers")],
            ray="abc123-lab",
        )
    seen = json.loads(bytes(result.body))
    assert seen["method"] == "GET" and seen["target"] == "/headers?a=1&b=%20"
    names = [name.lower() for name, _ in seen["headers"]]
    assert dict((k.lower(), v) for k, v in seen["headers"])["host"] == "app.example.com:8443"
    assert names.count("host") == 1 and "x-custom" in names and "cf-ray" in names
    assert "connection" not in names and "te" not in names and "x-forwarded-host" not in names


async def test_http_host_header_overrides_host_and_sets_x_forwarded_host(edge, origin):
    async with Connector(edge, config_for(origin, httpHostHeader="internal.local")) as connector:
        result = await connector.driver.fetch("/headers")
    seen = {name.lower(): value for name, value in json.loads(bytes(result.body))["headers"]}
    assert seen["host"] == "internal.local"
    assert seen["x-forwarded-host"] == "app.example.com"


async def test_response_headers_repeat_and_hop_by_hop_ones_are_dropped(edge, origin):
    async with Connector(edge, config_for(origin)) as connector:
        result = await connector.driver.fetch("/cookies")
    assert result.response.status == 201
    headers = headers_of(result.response)
    assert headers[b"set-cookie"] == [b"a=1", b"b=2"]
    assert b"connection" not in headers


async def test_post_with_a_content_length_is_sent_as_is(edge, origin):
    body = b"hello world" * 100
    async with Connector(edge, config_for(origin)) as connector:
        result = await connector.driver.fetch(
            "/echo", method="POST", body=body, headers=[(b"content-length", str(len(body)).encode())]
        )
    assert bytes(result.body) == body
    assert headers_of(result.response)[b"x-chunked"] == [b"no"]


async def test_empty_post_gets_a_zero_content_length(edge, origin):
    async with Connector(edge, config_for(origin)) as connector:
        await connector.driver.fetch("/echo", method="POST")
    assert origin.requests[-1].header("content-length") == "0"


async def test_large_bodies_both_ways_stay_within_the_windows(edge, origin):
    body = bytes(range(256)) * 4096 * 3  # 3 MiB, no Content-Length: chunked to the origin
    async with Connector(edge, config_for(origin)) as connector:
        driver = connector.driver
        result = await driver.fetch("/echo", method="POST", body=body)
        big = await driver.fetch("/big?n=4194304")
        assert driver.violations == []
    assert result.response.status == 200 and bytes(result.body) == body
    assert headers_of(result.response)[b"x-chunked"] == [b"yes"]
    assert len(big.body) == 4194304
    assert all(len(chunk) <= protocol.MAX_DATA_CHUNK for chunk in big.chunks)


async def test_disable_chunked_encoding_sends_a_content_length(edge, origin):
    body = b"z" * 700_000  # more than a window: the connector grants while it buffers
    async with Connector(edge, config_for(origin, disableChunkedEncoding=True)) as connector:
        result = await connector.driver.fetch("/echo", method="POST", body=body)
    assert bytes(result.body) == body
    assert origin.requests[-1].header("content-length") == str(len(body))
    assert headers_of(result.response)[b"x-chunked"] == [b"no"]


async def test_the_response_waits_for_window_credit(edge, origin):
    async with Connector(edge, config_for(origin)) as connector:
        driver = connector.driver
        driver.grant = False
        sid = await driver.request("/big?n=1048576")
        assert (await driver.head(sid)).status == 200
        received = 0
        with pytest.raises(asyncio.TimeoutError):
            while True:
                received += len((await driver.next(sid, timeout=0.5)).data)
        assert received == INITIAL_WINDOW  # stopped exactly at the window
        await driver.conn.send(protocol.Window(sid, 1048576))
        driver.recv_window[sid] += 1048576
        while received < 1048576:
            received += len((await driver.next(sid)).data)
        assert driver.violations == []


async def test_head_204_and_read_until_close(edge, origin):
    async with Connector(edge, config_for(origin)) as connector:
        head = await connector.driver.fetch("/hello", method="HEAD")
        empty = await connector.driver.fetch("/no-content")
        until_close = await connector.driver.fetch("/until-close")
        after = await connector.driver.fetch("/hello")
    assert head.response.status == 200 and head.response.end_stream
    assert headers_of(head.response)[b"content-length"] == [b"1024"]
    assert empty.response.status == 204 and empty.response.end_stream
    assert bytes(until_close.body) == b"all of it until the close" and until_close.ended
    assert after.response.status == 200


async def test_expect_100_continue_interim_response_is_skipped(edge, parser):
    origin = Origin()

    @origin.route("/upload")
    @streams_body
    async def upload(request, reader, writer):
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await reader.readexactly(int(request.header("content-length")))
        respond(writer, 200, b"got " + body)

    await origin.start()
    try:
        async with Connector(edge, config_for(origin)) as connector:
            result = await connector.driver.fetch(
                "/upload",
                method="PUT",
                body=b"data",
                headers=[(b"expect", b"100-continue"), (b"content-length", b"4")],
            )
        assert result.response.status == 200 and bytes(result.body) == b"got data"
    finally:
        await origin.stop()


async def test_chunked_and_server_sent_events_arrive_without_buffering(edge, parser):
    origin = Origin()
    release = asyncio.Event()

    @origin.route("/events")
    async def events(request, reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"d\r\ndata: first\n\n\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")

    await origin.start()
    try:
        async with Connector(edge, config_for(origin)) as connector:
            driver = connector.driver
            sid = await driver.request("/events")
            head = await driver.head(sid)
            assert headers_of(head)[b"content-type"] == [b"text/event-stream"]
            assert b"transfer-encoding" not in headers_of(head)
            first = await driver.next(sid)
            assert first.data == b"data: first\n\n" and not first.end_stream  # before the origin sent more
            release.set()
            rest = await driver.result(sid)
            assert bytes(rest.body) == b"data: second\n\n" and rest.ended
    finally:
        await origin.stop()


async def test_keep_alive_connections_zero_disables_reuse(edge, origin):
    async with Connector(edge, config_for(origin, keepAliveConnections=0)) as connector:
        await connector.driver.fetch("/hello")
        await connector.driver.fetch("/hello")
    assert origin.connections == 2


async def test_idle_connections_expire_after_keep_alive_timeout(edge, origin):
    async with Connector(edge, config_for(origin, keepAliveTimeout=1)) as connector:
        await connector.driver.fetch("/hello")
        await asyncio.sleep(1.2)
        await connector.driver.fetch("/hello")
    assert origin.connections == 2


# ------------------------------------------------------------------------------------------------ services


async def test_http_status_service(edge):
    async with Connector(edge, rules("http_status:418")) as connector:
        result = await connector.driver.fetch("/anything")
        missing = await connector.driver.fetch("/", host="other.example.com")
    assert result.response.status == 418 and result.response.end_stream
    assert missing.response.status == 404


async def test_no_configuration_answers_503(edge):
    async with Connector(edge, None) as connector:
        result = await connector.driver.fetch("/")
    assert result.response.status == 503
    assert b"no ingress rules" in bytes(result.body)


async def test_hello_world_html_and_json(edge):
    async with Connector(edge, rules("hello_world")) as connector:
        page = await connector.driver.fetch("/some/path?q=1", headers=[(b"x-probe", b"<script>")])
        data = await connector.driver.fetch("/p", method="POST", headers=[(b"accept", b"application/json")])
    html = bytes(page.body).decode()
    assert page.response.status == 200 and "text/html" in headers_of(page.response)[b"content-type"][0].decode()
    assert "/some/path" in html and "x-probe" in html and "&lt;script&gt;" in html and "<script>" not in html
    parsed = json.loads(bytes(data.body))
    assert parsed["method"] == "POST" and parsed["path"] == "/p"
    assert ["accept", "application/json"] in parsed["headers"]


async def test_hello_world_websocket_echoes(edge):
    async with Connector(edge, rules("hello_world")) as connector:
        driver = connector.driver
        sid = await driver.request("/ws", websocket=True)
        assert (await driver.head(sid)).status == 101
        await driver.conn.send(protocol.WsMessage(sid, b"ping", binary=False))
        echoed = await driver.next_message(sid)
        assert echoed.data == b"ping" and not echoed.binary
        await driver.conn.send(protocol.WsMessage.close(sid, 1000, "bye"))
        closing = await driver.next_message(sid)
        assert closing.end_stream and closing.close_code() == (1000, "bye")


async def test_unix_socket_origin(edge, parser, tmp_path):
    path = str(tmp_path / "origin.sock")
    origin = await standard_origin().start(unix_path=path)
    try:
        async with Connector(edge, rules(f"unix:{path}")) as connector:
            result = await connector.driver.fetch("/headers")
            missing = await connector.driver.fetch("/", host="app.example.com")
        assert result.response.status == 200
        assert {k.lower(): v for k, v in json.loads(bytes(result.body))["headers"]}["host"] == "app.example.com"
        assert missing.response.status == 404  # the origin's own 404
    finally:
        await origin.stop()


# ------------------------------------------------------------------------------------------------ errors


async def test_connection_refused(edge, caplog):
    port = await closed_port()
    async with Connector(edge, rules(f"http://127.0.0.1:{port}")) as connector:
        result = await connector.driver.fetch("/", ray="feedface-lab")
    assert result.reset.code == ResetCode.ORIGIN_ERROR
    assert result.reset.message == f"connection refused by 127.0.0.1:{port}"
    assert "cf-ray=feedface-lab" in caplog.text and f"connection refused by 127.0.0.1:{port}" in caplog.text


async def test_unresolvable_host(edge):
    async with Connector(edge, rules("http://no-such-origin.invalid:8080")) as connector:
        result = await connector.driver.fetch("/")
    assert result.reset.code == ResetCode.ORIGIN_ERROR
    assert result.reset.message.startswith("cannot resolve no-such-origin.invalid")


async def test_connect_timeout(edge):
    # A listener whose accept queue is full and never drained: SYNs go unanswered, so connect() hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    try:
        async with Connector(edge, rules(f"http://127.0.0.1:{port}", {"connectTimeout": 1})) as connector:
            result = await connector.driver.fetch("/")
        assert result.reset.code == ResetCode.TIMEOUT
        assert result.reset.message.startswith("origin did not accept the connection within 1 s")
    finally:
        for sock in (listener, *fillers):
            sock.close()


async def test_tls_timeout(edge):
    async def silent(reader, writer):
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Connector(edge, rules(f"https://127.0.0.1:{port}", {"tlsTimeout": 1})) as connector:
            result = await connector.driver.fetch("/")
        assert result.reset.code == ResetCode.TIMEOUT
        assert result.reset.message.startswith("origin did not complete the TLS handshake within 1 s")
    finally:
        server.close()


async def test_origin_closing_before_responding_and_garbage(edge, origin):
    async with Connector(edge, config_for(origin)) as connector:
        dropped = await connector.driver.fetch("/drop")
        garbage = await connector.driver.fetch("/garbage")
    assert dropped.reset.code == ResetCode.ORIGIN_ERROR
    assert dropped.reset.message.startswith("origin closed the connection before responding")
    assert garbage.reset.code == ResetCode.ORIGIN_ERROR
    assert garbage.reset.message.startswith("origin sent an invalid HTTP response")


async def test_failure_after_the_head_resets_the_stream(edge, parser):
    origin = Origin()

    @origin.route("/short")
    async def short(request, reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        await writer.drain()
        writer.transport.abort()
        return False

    await origin.start()
    try:
        async with Connector(edge, config_for(origin)) as connector:
            result = await connector.driver.fetch("/short")
        assert result.response.status == 200
        assert bytes(result.body) == b"only ten b"
        assert result.reset.code == ResetCode.ORIGIN_ERROR
    finally:
        await origin.stop()


async def test_missing_unix_socket(edge, tmp_path):
    path = str(tmp_path / "nope.sock")
    async with Connector(edge, rules(f"unix:{path}")) as connector:
        result = await connector.driver.fetch("/")
    assert result.reset.message == f"unix socket {path} does not exist"


# ------------------------------------------------------------------------------------------------ stream life


async def test_many_streams_and_no_head_of_line_blocking(edge, parser):
    origin = standard_origin()
    hang = asyncio.Event()

    @origin.route("/hang")
    async def hanging(request, reader, writer):
        await hang.wait()
        respond(writer, 200, b"late")

    await origin.start()
    try:
        async with Connector(edge, config_for(origin)) as connector:
            driver = connector.driver
            driver.grant = False
            stalled = await driver.request("/big?n=2097152")  # a visitor that reads nothing: stalls at the window
            hung = await driver.request("/hang")  # an origin that does not answer
            await driver.head(stalled)
            results = await asyncio.gather(*(driver.fetch("/hello") for _ in range(40)))
            assert all(result.response.status == 200 and len(result.body) == 1024 for result in results)
            hang.set()
            assert bytes((await driver.result(hung)).body) == b"late"
    finally:
        await origin.stop()


async def test_reset_cancel_aborts_the_origin_request(edge, parser):
    origin = Origin()
    seen_close = asyncio.Event()

    @origin.route("/slow")
    async def slow(request, reader, writer):
        await reader.read()  # returns at EOF: the connector dropped the connection
        seen_close.set()
        return False

    await origin.start()
    try:
        async with Connector(edge, config_for(origin)) as connector:
            driver = connector.driver
            sid = await driver.request("/slow")
            await wait_until(lambda: origin.requests)
            await driver.conn.send(protocol.Reset(sid, ResetCode.CANCEL, "visitor went away"))
            await asyncio.wait_for(seen_close.wait(), 5)
            await wait_until(lambda: not connector.supervisor.connections[0].streams)
    finally:
        await origin.stop()


async def test_an_edge_timeout_is_logged_with_the_request_id_for_the_origins_owner(edge, parser, caplog):
    """The visitor got a 504 page with only the request id: the connector's log says which request and origin."""
    origin = Origin()

    @origin.route("/slow")
    async def slow(request, reader, writer):
        await reader.read()
        return False

    await origin.start()
    try:
        async with Connector(edge, config_for(origin)) as connector:
            driver = connector.driver
            sid = await driver.request("/slow", ray="0123456789abcdef-lab")
            await wait_until(lambda: origin.requests)
            await driver.conn.send(protocol.Reset(sid, ResetCode.TIMEOUT, "No response within 100 s."))
            await wait_until(lambda: "Request timed out at the edge" in caplog.text)
    finally:
        await origin.stop()
    line = next(line for line in caplog.text.splitlines() if "timed out at the edge" in line)
    assert "cf-ray=0123456789abcdef-lab" in line and "No response within 100 s." in line and "path=/slow" in line


async def test_the_edge_exceeding_the_window_is_reset(edge, origin):
    async with Connector(edge, config_for(origin)) as connector:
        driver = connector.driver
        sid = await driver.request("/echo", method="POST", more=True)
        for _ in range(5):
            await driver.conn.send(protocol.Data(sid, b"x" * 65536))
        result = await driver.result(sid)
    assert result.reset.code == ResetCode.FLOW_CONTROL_ERROR


async def test_config_swap_mid_request_finishes_on_the_old_rules(edge, parser):
    old, new = Origin(), standard_origin()
    release = asyncio.Event()

    @old.route("/hello")
    async def slow_hello(request, reader, writer):
        await release.wait()
        respond(writer, 200, b"from the old origin")

    await old.start()
    await new.start()
    try:
        async with Connector(edge, config_for(old)) as connector:
            driver = connector.driver
            sid = await driver.request("/hello")
            await wait_until(lambda: old.requests)
            await connector.push(config_for(new))
            fresh = await driver.fetch("/hello")
            release.set()
            inflight = await driver.result(sid)
        assert bytes(inflight.body) == b"from the old origin"
        assert bytes(fresh.body) == b"x" * 1024
    finally:
        await old.stop()
        await new.stop()


async def test_drain_refuses_new_streams_and_finishes_in_flight_ones(edge, parser):
    origin = Origin()
    release = asyncio.Event()

    @origin.route("/slow")
    async def slow(request, reader, writer):
        await release.wait()
        respond(writer, 200, b"finished")

    await origin.start()
    try:
        connector = Connector(edge, config_for(origin), grace_period=5.0)
        async with connector:
            driver = connector.driver
            sid = await driver.request("/slow")
            await wait_until(lambda: origin.requests)
            connector.supervisor.stop()
            await wait_until(lambda: any(message.KIND == Kind.DRAIN for message in driver.control))
            refused = await driver.fetch("/slow")
            assert refused.reset.code == ResetCode.REFUSED_STREAM
            release.set()
            finished = await driver.result(sid)
            assert bytes(finished.body) == b"finished"
            code, _ = await driver.conn.close_seen()
            assert code == protocol.CloseCode.GOING_AWAY
    finally:
        await origin.stop()


async def test_features_advertise_streams(edge):
    async with Connector(edge, None) as connector:
        assert "streams" in connector.driver.conn.hello.features


async def test_connection_loss_aborts_origin_requests(edge, parser):
    origin = Origin()
    seen_close = asyncio.Event()

    @origin.route("/slow")
    async def slow(request, reader, writer):
        await reader.read()
        seen_close.set()
        return False

    await origin.start()
    try:
        async with Connector(edge, config_for(origin)) as connector:
            await connector.driver.request("/slow")
            await wait_until(lambda: origin.requests)
            connector.driver.conn.ws.transport.abort()
            await asyncio.wait_for(seen_close.wait(), 5)
    finally:
        await origin.stop()


async def test_a_burst_of_responses_leaves_at_once_and_the_rest_at_the_end_of_the_turn():
    """Mux: EARLY_FLUSH_FRAMES frames leave at once (the edge starts answering visitors), never splitting a DATA frame
    from the END_STREAM folded into it; the rest leaves at the end of the loop turn, all in order."""
    import collections
    import types

    from connector import dataplane

    class Ws:
        buffered = 0

        def __init__(self) -> None:
            self.messages: list[bytes] = []

        def send_nowait(self, messages: list[bytes]) -> None:
            self.messages += messages

    ws = Ws()
    conn = types.SimpleNamespace(
        ws=ws, streams={}, stats=types.SimpleNamespace(frames_sent=collections.Counter()), draining=False, index=0
    )
    mux = dataplane.Mux(types.SimpleNamespace(), conn)
    mux.batching = True
    responses = dataplane.EARLY_FLUSH_FRAMES // 2 + 3
    for n in range(responses):
        sid = 2 * n + 1
        mux.response(sid, 200, [(b"content-length", b"2")], end=False)
        mux.frame(Kind.DATA, sid, 0, b"ok")  # open DATA: its END is folded in below, never flushed before it
        mux.end_stream(sid)
        if 2 * (n + 1) < dataplane.EARLY_FLUSH_FRAMES:
            assert ws.messages == []
    early = [protocol.decode(bytes(f)) for m in ws.messages for f in protocol.split_frames(m)]
    assert len(ws.messages) == 1 and len(early) == dataplane.EARLY_FLUSH_FRAMES
    await asyncio.sleep(0)  # the end of the turn
    frames = [protocol.decode(bytes(f)) for m in ws.messages for f in protocol.split_frames(m)]
    assert len(frames) == 2 * responses  # RESPONSE + one DATA carrying END_STREAM each: nothing split
    for n in range(responses):
        head, data = frames[2 * n], frames[2 * n + 1]
        assert isinstance(head, protocol.Response) and head.stream_id == 2 * n + 1
        assert isinstance(data, protocol.Data) and data.data == b"ok" and data.end_stream
