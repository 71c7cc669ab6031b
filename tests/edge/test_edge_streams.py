"""The edge's request path in-process: a protocol-level peer stands in for the connector (the real connector is
exercised end to end in tests/edge/test_edge_e2e.py)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator, WebsocketCommunicator

from connector import protocol
from tests.edge.conftest import recorded_errors
from tunnels.services import tunnel_token

pytestmark = [pytest.mark.django_db(transaction=True)]


def application():
    from controlplane.asgi import application

    return application


async def peer(token: str, features=("streams",)):
    comm = WebsocketCommunicator(
        application(),
        protocol.WEBSOCKET_PATH,
        headers=[(b"authorization", f"Bearer {token}".encode()), (b"host", b"127.0.0.1")],
    )
    comm.scope["client"] = ("127.0.0.1", 40000)
    assert (await comm.connect())[0]
    await comm.send_to(
        bytes_data=protocol.encode(
            protocol.Hello(connector_id=str(uuid.uuid4()), version="peer", features=list(features))
        )
    )
    while True:
        msg = protocol.decode((await comm.receive_output(3))["bytes"])
        if isinstance(msg, protocol.Welcome):
            return comm


async def next_frame(comm, kinds=(protocol.Request, protocol.Data, protocol.Reset, protocol.Window)):
    while True:
        msg = protocol.decode((await comm.receive_output(3))["bytes"])
        if isinstance(msg, kinds):
            return msg


def visit(path="/", method="GET", body=b"", headers=None, host=b"app.example.com"):
    return HttpCommunicator(application(), method, path, body=body, headers=[(b"host", host), *(headers or [])])


async def test_unknown_host_is_404_and_no_connector_is_530(fresh_hub, routed_tunnel):
    response = await visit(host=b"nope.example.org").get_response(timeout=5)
    assert response["status"] == 404 and b"not a public hostname" in response["body"]
    response = await visit().get_response(timeout=5)
    assert response["status"] == 530
    ray = dict(response["headers"])[b"cf-ray"]
    assert ray in response["body"]


async def test_request_and_streamed_response(fresh_hub, routed_tunnel):
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    conn = await peer(token)
    visitor = visit("/hello?x=1", headers=[(b"cf-connecting-ip", b"6.6.6.6")])
    response_task = asyncio.ensure_future(visitor.get_response(timeout=5))
    request = await next_frame(conn)
    assert isinstance(request, protocol.Request) and request.end_stream
    assert request.method == "GET" and request.target == "/hello?x=1" and request.authority == "app.example.com"
    headers = dict(request.headers)
    assert headers[b"cf-connecting-ip"] != b"6.6.6.6"
    await conn.send_to(
        bytes_data=protocol.encode(protocol.Response(request.stream_id, 200, [(b"content-type", b"text/plain")]))
    )
    await conn.send_to(bytes_data=protocol.encode(protocol.Data(request.stream_id, b"hello ")))
    await conn.send_to(bytes_data=protocol.encode(protocol.Data(request.stream_id, b"world", end_stream=True)))
    response = await response_task
    assert response["status"] == 200 and response["body"] == b"hello world"
    assert dict(response["headers"])[b"content-type"] == b"text/plain"


async def test_upload_is_streamed_within_the_window(fresh_hub, routed_tunnel):
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    conn = await peer(token)
    body = b"x" * (protocol.INITIAL_WINDOW + 100_000)
    response_task = asyncio.ensure_future(visit("/upload", "POST", body=body).get_response(timeout=10))
    request = await next_frame(conn)
    assert not request.end_stream
    received = b""
    while len(received) < protocol.INITIAL_WINDOW:
        data = await next_frame(conn)
        received += data.data
    assert len(received) == protocol.INITIAL_WINDOW  # nothing beyond the window until we grant more
    assert await conn.receive_nothing(0.2)
    await conn.send_to(bytes_data=protocol.encode(protocol.Window(request.stream_id, 200_000)))
    while True:
        data = await next_frame(conn)
        received += data.data
        if data.end_stream:
            break
    assert received == body
    await conn.send_to(bytes_data=protocol.encode(protocol.Response(request.stream_id, 201, [], end_stream=True)))
    assert (await response_task)["status"] == 201


async def test_origin_failure_before_the_head_is_a_502_whose_cause_only_the_tunnels_members_see(
    fresh_hub, routed_tunnel, origin_errors
):
    """The visitor gets the status, a plain sentence and the request id; the origin's address and the reason go
    to the tunnel's recent origin errors under the same id."""
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    conn = await peer(token)
    for accept in (b"text/html", b"application/json"):
        response_task = asyncio.ensure_future(visit("/page", headers=[(b"accept", accept)]).get_response(timeout=5))
        request = await next_frame(conn)
        reason = "connection refused by localhost:3001"
        reset = protocol.Reset(request.stream_id, protocol.ResetCode.ORIGIN_ERROR, reason)
        await conn.send_to(bytes_data=protocol.encode(reset))
        response = await response_task
        ray = dict(response["headers"])[b"cf-ray"]
        assert response["status"] == 502 and ray in response["body"]
        for secret in (b"localhost", b"3001", b"refused"):
            assert secret not in response["body"].lower(), response["body"]
    rows = await recorded_errors(origin_errors, routed_tunnel)
    assert [(row.status, row.reason, row.hostname, row.path) for row in rows] == [
        (502, "connection refused by localhost:3001", "app.example.com", "/page")
    ] * 2
    assert rows[0].request_id == ray.decode()


async def test_a_timeout_is_a_504_recorded_with_its_reason(fresh_hub, routed_tunnel, origin_errors, settings):
    settings.EDGE_RESPONSE_TIMEOUT_SECONDS = 0.3
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    conn = await peer(token)
    response_task = asyncio.ensure_future(visit("/slow").get_response(timeout=5))
    await next_frame(conn)
    response = await response_task
    ray = dict(response["headers"])[b"cf-ray"]
    assert response["status"] == 504 and ray in response["body"] and b"0.3 s" not in response["body"]
    [row] = await recorded_errors(origin_errors, routed_tunnel)
    assert (row.status, row.request_id, row.reason) == (504, ray.decode(), "No response within 0.3 s.")


async def test_connectors_without_the_data_plane_are_not_used(fresh_hub, routed_tunnel):
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    await peer(token, features=())
    response = await visit().get_response(timeout=5)
    assert response["status"] == 530


async def test_a_connector_exceeding_the_window_is_reset(fresh_hub, routed_tunnel):
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    conn = await peer(token)
    response_task = asyncio.ensure_future(visit().get_response(timeout=5))
    request = await next_frame(conn)
    await conn.send_to(bytes_data=protocol.encode(protocol.Response(request.stream_id, 200, [])))
    chunk = b"y" * protocol.MAX_DATA_CHUNK
    for _ in range(protocol.INITIAL_WINDOW // len(chunk) + 1):
        await conn.send_to(bytes_data=protocol.encode(protocol.Data(request.stream_id, chunk)))
    reset = await next_frame(conn, kinds=(protocol.Reset,))
    assert reset.code == protocol.ResetCode.FLOW_CONTROL_ERROR
    response_task.cancel()


async def test_a_stream_reset_after_the_head_fails_the_response_so_that_the_server_closes_the_connection(
    fresh_hub, routed_tunnel
):
    """Finishing the response would make the cut body look complete; returning would leave the visitor waiting."""
    from edge.app import ResponseCut

    token = await sync_to_async(tunnel_token)(routed_tunnel)
    conn = await peer(token)
    visitor = visit("/cut")
    await visitor.send_input({"type": "http.request", "body": b""})
    request = await next_frame(conn)
    sid = request.stream_id
    await conn.send_to(bytes_data=protocol.encode(protocol.Response(sid, 200, [(b"content-length", b"100")])))
    await conn.send_to(bytes_data=protocol.encode(protocol.Data(sid, b"x" * 10)))
    assert (await visitor.receive_output(5))["status"] == 200
    assert (await visitor.receive_output(5))["body"] == b"x" * 10
    await conn.send_to(bytes_data=protocol.encode(protocol.Reset(sid, protocol.ResetCode.ORIGIN_ERROR, "origin gone")))
    with pytest.raises(ResponseCut, match="origin gone"):
        await visitor.receive_output(5)


async def drain(comm) -> int:
    """Bytes of the DATA frames that arrive until the connection is quiet for 50 ms."""
    size = 0
    while not await comm.receive_nothing(0.05):  # (a receive_output timeout would cancel the application)
        frame = protocol.decode((await comm.receive_output(1))["bytes"])
        if isinstance(frame, protocol.Data):
            size += len(frame.data)
    return size


async def test_the_response_timeout_runs_from_the_end_of_the_upload(fresh_hub, routed_tunnel, settings):
    """An upload that keeps moving is not an origin timeout (nginx's proxy_read_timeout counts the same way);
    one the origin stops taking is (504)."""
    settings.EDGE_RESPONSE_TIMEOUT_SECONDS = 1
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    conn = await peer(token)
    quarter = protocol.INITIAL_WINDOW // 4
    body = b"u" * (protocol.INITIAL_WINDOW + 4 * quarter)  # the last byte moves with the fourth grant
    response_task = asyncio.ensure_future(visit("/slow-upload", "POST", body=body).get_response(timeout=10))
    request = await next_frame(conn)
    received = 0
    for _ in range(4):  # a quarter window every 0.6 s: 2.4 s of upload, over twice the timeout
        await asyncio.sleep(0.6)
        received += await drain(conn)
        await conn.send_to(bytes_data=protocol.encode(protocol.Window(request.stream_id, quarter)))
    received += await drain(conn)
    assert received == len(body)
    await conn.send_to(bytes_data=protocol.encode(protocol.Response(request.stream_id, 201, [], end_stream=True)))
    assert (await response_task)["status"] == 201

    # Nothing granted: the upload stalls at the window, and the wait ends one timeout later.
    started = asyncio.get_running_loop().time()
    response = await visit("/stalled-upload", "POST", body=body).get_response(timeout=10)
    assert response["status"] == 504
    assert 1 <= asyncio.get_running_loop().time() - started < 3


async def test_websocket_messages_from_the_visitor_wait_for_the_window_and_oversized_ones_get_1009(
    fresh_hub, routed_tunnel
):
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    conn = await peer(token)
    visitor = WebsocketCommunicator(application(), "/chat", headers=[(b"host", b"app.example.com")])
    connecting = asyncio.ensure_future(visitor.connect(timeout=5))
    request = await next_frame(conn)
    assert request.websocket
    sid = request.stream_id
    await conn.send_to(bytes_data=protocol.encode(protocol.Response(sid, 101, [])))
    assert (await connecting)[0]

    message = b"m" * 200_000
    for _ in range(3):
        await visitor.send_to(bytes_data=message)
    kinds = (protocol.WsMessage,)
    assert (await next_frame(conn, kinds)).data == message  # 56 KiB of the window left
    assert (await next_frame(conn, kinds)).data == message  # a message may overdraw a positive window once
    assert await conn.receive_nothing(0.3)  # the third waits for credit
    await conn.send_to(bytes_data=protocol.encode(protocol.Window(sid, 400_000)))
    assert (await next_frame(conn, kinds)).data == message

    await visitor.send_to(bytes_data=b"x" * (protocol.MAX_PAYLOAD_SIZE + 1))
    close = await next_frame(conn, kinds)
    assert close.end_stream and close.close_code()[0] == 1009
    assert (await visitor.receive_output(5)) == {
        "type": "websocket.close",
        "code": 1009,
        "reason": f"message larger than {protocol.MAX_PAYLOAD_SIZE} bytes",
    }


async def test_a_websocket_upgrade_the_origin_fails_is_recorded_for_the_tunnel(fresh_hub, routed_tunnel, origin_errors):
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    conn = await peer(token)
    visitor = WebsocketCommunicator(application(), "/chat", headers=[(b"host", b"app.example.com")])
    connecting = asyncio.ensure_future(visitor.connect(timeout=5))
    request = await next_frame(conn)
    reason = "connection refused by localhost:3001"
    await conn.send_to(
        bytes_data=protocol.encode(protocol.Reset(request.stream_id, protocol.ResetCode.ORIGIN_ERROR, reason))
    )
    connected, code = await connecting
    assert not connected and code == 1011
    [row] = await recorded_errors(origin_errors, routed_tunnel)
    assert (row.status, row.path, row.reason) == (502, "/chat", f"Websocket: {reason}")
    assert row.request_id == dict(request.headers)[b"cf-ray"].decode()


async def request_on_either(conns) -> tuple[object, protocol.Request]:
    """The connection (of `conns`) that got the next REQUEST, and the request."""
    for _ in range(100):
        for comm in conns:
            if not await comm.receive_nothing(0.01):
                frame = await next_frame(comm, (protocol.Request,))
                return comm, frame
    raise AssertionError("no REQUEST on any connection")


async def pending(comm) -> list:
    """The frames that arrive until the connection is quiet for 100 ms."""
    frames = []
    while not await comm.receive_nothing(0.1):
        frames.append(protocol.decode((await comm.receive_output(1))["bytes"]))
    return frames


async def respond(comm, sid: int, status: int = 200) -> None:
    await comm.send_to(bytes_data=protocol.encode(protocol.Response(sid, status, [], end_stream=True)))


async def test_a_refused_stream_is_tried_on_another_connection_but_not_with_a_body(fresh_hub, routed_tunnel):
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    conns = [await peer(token), await peer(token)]
    answer = asyncio.ensure_future(visit("/refused", "POST").get_response(timeout=5))  # POST without a body
    first, request = await request_on_either(conns)
    await first.send_to(
        bytes_data=protocol.encode(protocol.Reset(request.stream_id, protocol.ResetCode.REFUSED_STREAM, "draining"))
    )
    second, retried = await request_on_either(conns)
    assert second is not first and retried.target == "/refused" and retried.method == "POST"
    await respond(second, retried.stream_id, 201)
    assert (await answer)["status"] == 201

    # With a body, the body went to the first connection: nothing is retried.
    answer = asyncio.ensure_future(visit("/refused", "POST", body=b"once").get_response(timeout=5))
    first, request = await request_on_either(conns)
    await first.send_to(
        bytes_data=protocol.encode(protocol.Reset(request.stream_id, protocol.ResetCode.REFUSED_STREAM, "draining"))
    )
    assert (await answer)["status"] == 502
    assert not [frame for comm in conns for frame in await pending(comm) if isinstance(frame, protocol.Request)]


async def test_a_refused_stream_with_no_other_connection_to_try_is_530_no_active_connector(
    fresh_hub, routed_tunnel, origin_errors
):
    """Refused unprocessed (the connector is draining, or a peer instance it just left) and nothing else to try:
    the tunnel has no connector that can take it, which is 530 (Cloudflare's 1033), not an origin error."""
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    conn = await peer(token)
    for body in (b"", b"with a body"):
        answer = asyncio.ensure_future(visit("/refused", "POST", body=body).get_response(timeout=5))
        request = await next_frame(conn)
        reset = protocol.Reset(request.stream_id, protocol.ResetCode.REFUSED_STREAM, "the connector is draining")
        await conn.send_to(bytes_data=protocol.encode(reset))
        response = await answer
        assert response["status"] == 530 and b"the connector is draining" not in response["body"]
        if body:
            assert isinstance(await next_frame(conn), protocol.Data)  # the body had gone out before the refusal
    assert not [frame for frame in await pending(conn) if isinstance(frame, protocol.Request)]
    rows = await recorded_errors(origin_errors, routed_tunnel)
    assert [row.status for row in rows] == [530, 530] and "the connector is draining" in rows[0].reason


@pytest.mark.parametrize(("method", "retried"), [("GET", True), ("DELETE", False)])
async def test_a_request_whose_connection_is_lost_is_retried_only_if_its_method_is_safe(
    fresh_hub, routed_tunnel, method, retried
):
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    conns = [await peer(token), await peer(token)]
    answer = asyncio.ensure_future(visit("/lost", method).get_response(timeout=5))
    first, request = await request_on_either(conns)
    await first.send_input({"type": "websocket.disconnect", "code": 1006})
    other = conns[1] if first is conns[0] else conns[0]
    if retried:
        _, again = await request_on_either([other])
        assert again.target == "/lost"
        await respond(other, again.stream_id)
        assert (await answer)["status"] == 200
    else:
        response = await answer
        assert response["status"] == 502 and b"connection lost" not in response["body"]
        assert not [frame for frame in await pending(other) if isinstance(frame, protocol.Request)]


@pytest.mark.parametrize("when", ["before the head", "mid-body"])
async def test_a_visitor_going_away_cancels_the_stream(fresh_hub, routed_tunnel, when):
    """daphne's send() to a closed connection says nothing: the edge learns it from receive()."""
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    conn = await peer(token)
    visitor = visit("/long")
    await visitor.send_input({"type": "http.request", "body": b""})
    request = await next_frame(conn)
    sid = request.stream_id
    if when == "mid-body":
        await conn.send_to(bytes_data=protocol.encode(protocol.Response(sid, 200, [])))
        await conn.send_to(bytes_data=protocol.encode(protocol.Data(sid, b"x" * 1000)))
        assert (await visitor.receive_output(5))["status"] == 200
        assert (await visitor.receive_output(5))["body"] == b"x" * 1000
    await visitor.send_input({"type": "http.disconnect"})
    reset = await next_frame(conn)
    assert isinstance(reset, protocol.Reset) and reset.stream_id == sid
    assert reset.code == protocol.ResetCode.CANCEL
    await visitor.wait(2)  # the application ends quietly (no exception: nobody is left to tell)
