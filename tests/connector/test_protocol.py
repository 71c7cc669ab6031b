import json
import struct
import subprocess
import sys

import pytest

from connector import protocol
from connector.protocol import CloseCode, Flags, Kind, ProtocolError

CONNECTOR_ID = "6f1c6a5e-7d6e-4b3a-9d7a-3c1f2e0b9a11"

CONTROL_MESSAGES = [
    protocol.Hello(
        connector_id=CONNECTOR_ID,
        version="0.1.0",
        conn_index=1,
        ha_connections=2,
        arch="linux_amd64",
        platform="Linux 6.1; Python 3.11.7",
        hostname="origin-1",
        local_ip="10.0.0.5",
        features=["remote-config"],
        config_version=7,
    ),
    protocol.Welcome(connection_id="c1", server_id="s1", heartbeat_interval=10.0, location="lab"),
    protocol.Config(version=3, config={"ingress": [{"service": "http_status:404"}]}),
    protocol.ConfigAck(version=3, applied=False, error="Rule #1 has an invalid regex", running_version=2),
    protocol.Ping(nonce=5, ts=1700000000.25),
    protocol.Pong(nonce=5, ts=1700000000.25),
    protocol.Drain(reason="connector shutting down"),
    protocol.Error(code="config_invalid", message="nope"),
]

DATA_MESSAGES = [
    protocol.Request(
        1,
        "POST",
        "https",
        "app.example.com",
        "/upload?x=1&y=%C3%A9",
        [(b"content-type", b"application/json"), (b"x-forwarded-for", b"203.0.113.9"), (b"x-bin", bytes(range(256)))],
    ),
    protocol.Request(3, "GET", "https", "ws.example.com", "/socket", [(b"upgrade", b"websocket")], websocket=True),
    protocol.Request(5, "GET", "http", "a.example.com", "/", [], end_stream=True),
    protocol.Response(1, 200, [(b"content-length", b"2")]),
    protocol.Response(3, 101, [], end_stream=False),
    protocol.Response(5, 404, [], end_stream=True),
    protocol.Data(1, b"hello " * 1000),
    protocol.Data(1, b"", end_stream=True),
    protocol.Reset(7, protocol.ResetCode.REFUSED_STREAM, "draining"),
    protocol.Reset(7, protocol.ResetCode.CANCEL),
    protocol.Window(1, protocol.INITIAL_WINDOW),
    protocol.WsMessage(3, b"\x00\x01binary", binary=True),
    protocol.WsMessage(3, "héllo".encode(), binary=False),
    protocol.WsMessage.close(3, 1000, "bye"),
]


@pytest.mark.parametrize("message", CONTROL_MESSAGES + DATA_MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message):
    assert protocol.decode(protocol.encode(message)) == message


def test_header_layout():
    frame = protocol.encode(protocol.Data(0x01020304, b"xyz", end_stream=True))
    assert frame[:8] == struct.pack("!BBHI", 1, Kind.DATA, Flags.END_STREAM, 0x01020304)
    assert frame[8:] == b"xyz"
    control = protocol.encode(protocol.Drain("x"))
    assert control[:8] == bytes([1, Kind.DRAIN, 0, 0, 0, 0, 0, 0])
    assert json.loads(control[8:]) == {"reason": "x"}


def test_kinds_are_partitioned():
    assert {int(kind) for kind in protocol.CONTROL_KINDS} == set(range(1, 9))
    assert {int(kind) for kind in protocol.DATA_KINDS} == set(range(16, 22))
    assert set(protocol.CONTROL_MESSAGES) | set(protocol.DATA_MESSAGES) | {Kind.BATCH} == set(Kind)


def test_batches_carry_frames_in_order_within_the_frame_size_limit():
    frames = [protocol.encode(m) for m in DATA_MESSAGES + CONTROL_MESSAGES]
    (batch,) = protocol.encode_batches(frames)
    assert batch[:8] == bytes([1, Kind.BATCH, 0, 0, 0, 0, 0, 0])
    assert protocol.decode_many(batch) == [protocol.decode(frame) for frame in frames]
    assert protocol.decode_many(frames[0]) == [protocol.decode(frames[0])]  # a plain frame is a batch of one
    assert protocol.encode_batches(frames[:1]) == frames[:1]  # alone: sent as it is
    chunk = protocol.encode(protocol.Data(1, b"x" * 64 * 1024))  # 15 per BATCH within MAX_FRAME_SIZE
    messages = protocol.encode_batches([chunk] * 40)
    assert len(messages) == 3 and all(len(m) <= protocol.MAX_FRAME_SIZE for m in messages)
    assert sum(len(protocol.decode_many(m)) for m in messages) == 40
    big = protocol.encode(protocol.Data(1, b"y" * (protocol.MAX_PAYLOAD_SIZE - 2)))
    assert protocol.encode_batches([frames[0], big, frames[1]]) == [frames[0], big, frames[1]]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (bytes([1, Kind.BATCH, 0, 0, 0, 0, 0, 0]), "empty BATCH"),
        (bytes([1, Kind.BATCH, 0, 0, 0, 0, 0, 0]) + b"\0\0\0\x09" + b"x" * 8, "truncated"),
        (bytes([1, Kind.BATCH, 0, 1, 0, 0, 0, 0]) + b"\0\0\0\x08" + b"x" * 8, "without flags"),
        (bytes([1, Kind.BATCH, 0, 0, 0, 0, 0, 0]) + b"\0\0\0\x08" + bytes([1, Kind.BATCH]) + b"\0" * 6, "BATCH where"),
        (bytes([1, Kind.BATCH, 0, 0, 0, 0, 0, 0]) + b"\0\0\0\x03abc", "shorter than"),
    ],
)
def test_garbled_batches_are_refused(message, error):
    with pytest.raises(protocol.ProtocolError, match=error):
        protocol.decode_many(message)
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(message)  # a single-frame receiver never accepts a BATCH


def test_request_frame_fast_path_matches_the_dataclass():
    headers = [(b"accept", b"*/*"), (b"x-\xff", b"\xe9")]
    for end, websocket in ((True, False), (False, True)):
        message = protocol.Request(7, "GET", "https", "app.example.com:8443", "/a?b=\xe9", headers, end, websocket)
        fast = protocol.request_frame(
            7,
            b"GET",
            b"https",
            b"app.example.com:8443",
            "/a?b=\xe9".encode("latin-1"),
            headers,
            end_stream=end,
            websocket=websocket,
        )
        assert fast == protocol.encode(message)
    with pytest.raises(protocol.ProtocolError):
        protocol.request_frame(1, b"", b"http", b"h", b"/", [])


def test_unknown_fields_are_ignored_and_defaults_apply():
    payload = json.dumps({"connection_id": "c", "from_the_future": [1, 2], "heartbeat_interval": 5}).encode()
    message = protocol.decode(protocol.encode_frame(Kind.WELCOME, payload))
    assert message == protocol.Welcome(connection_id="c", heartbeat_interval=5.0)
    assert isinstance(message.heartbeat_interval, float)


def test_ack_of_applied_config():
    ack = protocol.ConfigAck(version=2, applied=True, running_version=2)
    assert protocol.decode(protocol.encode(ack)).error == ""


def control(kind, payload, *, stream_id=0, flags=0):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return protocol.HEADER.pack(1, kind, flags, stream_id) + data


HELLO = {"connector_id": CONNECTOR_ID, "version": "1"}

GARBLED = {
    "empty": (b"", "shorter than the 8-byte header"),
    "short header": (b"\x01\x05\x00", "shorter than the 8-byte header"),
    "wrong version": (bytes([2, 5, 0, 0, 0, 0, 0, 0]) + b"{}", "unsupported protocol version 2"),
    "unknown kind": (bytes([1, 99, 0, 0, 0, 0, 0, 0]) + b"{}", "unknown message kind 99"),
    "kind zero": (bytes([1, 0, 0, 0, 0, 0, 0, 0]), "unknown message kind 0"),
    "unknown flag": (control(Kind.DATA, b"x", stream_id=1, flags=0x80), "unknown flags"),
    "control on a stream": (control(Kind.PING, {}, stream_id=3), "must travel on stream 0"),
    "control with flags": (control(Kind.PING, {}, flags=1), "must travel on stream 0"),
    "data on stream 0": (control(Kind.DATA, b"x"), "must travel on a stream >= 1"),
    "not json": (control(Kind.PING, b"{nope"), "not valid UTF-8 JSON"),
    "not utf-8": (control(Kind.PING, b'{"a": "\xff"}'), "not valid UTF-8 JSON"),
    "nan": (control(Kind.PING, b'{"ts": NaN}'), "not valid UTF-8 JSON"),
    "deep nesting": (control(Kind.CONFIG, b"[" * 100000 + b"]" * 100000), "not valid UTF-8 JSON"),
    "json array": (control(Kind.PING, [1, 2]), "must be a JSON object"),
    "missing field": (control(Kind.WELCOME, {}), "missing 'connection_id'"),
    "wrong type": (control(Kind.CONFIG, {"version": "3", "config": {}}), "CONFIG.version must be int"),
    "bool for int": (control(Kind.CONFIG, {"version": True, "config": {}}), "CONFIG.version must be int"),
    "config not object": (control(Kind.CONFIG, {"version": 3, "config": []}), "CONFIG.config must be dict"),
    "features not strings": (control(Kind.HELLO, {**HELLO, "features": [1]}), "HELLO.features must be list[str]"),
    "bad connector id": (control(Kind.HELLO, {**HELLO, "connector_id": "x"}), "must be a UUID"),
    "hello protocol": (control(Kind.HELLO, {**HELLO, "protocol": 9}), "unsupported protocol version 9"),
    "conn index": (control(Kind.HELLO, {**HELLO, "conn_index": 2, "ha_connections": 2}), "out of range"),
    "heartbeat range": (control(Kind.WELCOME, {"connection_id": "c", "heartbeat_interval": 0}), "out of range"),
    "truncated request": (control(Kind.REQUEST, b"\x03GE", stream_id=1), "REQUEST payload is truncated"),
    "request trailing": (
        control(Kind.REQUEST, protocol.Request(1, "GET", "http", "h", "/").payload() + b"!", stream_id=1),
        "trailing bytes",
    ),
    "empty method": (control(Kind.REQUEST, b"\x00\x00\x00\x00\x00\x00\x00\x00", stream_id=1), "without a method"),
    "truncated headers": (control(Kind.RESPONSE, b"\x00\xc8\x00\x02\x00\x01a", stream_id=1), "truncated"),
    "status range": (control(Kind.RESPONSE, b"\x00\x05\x00\x00", stream_id=1), "status out of range"),
    "window zero": (control(Kind.WINDOW, b"\x00\x00\x00\x00", stream_id=1), "increment out of range"),
    "window too big": (control(Kind.WINDOW, b"\xff\xff\xff\xff", stream_id=1), "increment out of range"),
    "window short": (control(Kind.WINDOW, b"\x00\x01", stream_id=1), "truncated"),
    "reset short": (control(Kind.RESET, b"\x00", stream_id=1), "truncated"),
    "reset not utf-8": (control(Kind.RESET, b"\x00\x00\x00\x01\xff", stream_id=1), "not UTF-8"),
    "ws close short": (control(Kind.WS_MESSAGE, b"\x03", stream_id=1, flags=1), "truncated"),
    "oversized": (control(Kind.DATA, b"x" * protocol.MAX_FRAME_SIZE, stream_id=1), "exceeds"),
}


@pytest.mark.parametrize("frame,reason", GARBLED.values(), ids=GARBLED.keys())
def test_garbled_frames_raise_protocol_error(frame, reason):
    with pytest.raises(ProtocolError) as caught:
        protocol.decode(frame)
    assert reason in caught.value.reason
    assert caught.value.close_code == CloseCode.PROTOCOL_VIOLATION == 4008
    assert len(caught.value.reason.encode()) <= 123  # fits a websocket close frame


def test_encode_refuses_oversized_payload():
    with pytest.raises(ProtocolError, match="exceeds"):
        protocol.encode(protocol.Data(1, b"x" * protocol.MAX_PAYLOAD_SIZE + b"x"))
    assert len(protocol.encode(protocol.Data(1, b"x" * protocol.MAX_PAYLOAD_SIZE))) == protocol.MAX_FRAME_SIZE


def test_encode_refuses_invalid_data_plane_values():
    with pytest.raises(ProtocolError):
        protocol.encode(protocol.Window(1, 0))
    with pytest.raises(ProtocolError):
        protocol.encode(protocol.Response(1, 42))
    with pytest.raises(ProtocolError):
        protocol.encode(protocol.Request(1, "GET", "http", "h", "/" * 70000))


def test_ws_close_code():
    assert protocol.WsMessage.close(1, 1001, "away").close_code() == (1001, "away")
    assert protocol.WsMessage(1, b"", end_stream=True).close_code() == (1005, "")


def test_close_codes():
    assert CloseCode.INVALID_TOKEN == 4001 and CloseCode.TOKEN_REFUSED == 4003
    assert CloseCode.PROTOCOL_VIOLATION == 4008 and CloseCode.DISCONNECTED == 4009
    assert CloseCode.TUNNEL_DELETED == 4010 and CloseCode.GOING_AWAY == 1001
    assert CloseCode.INVALID_TOKEN in protocol.REFUSAL_CLOSE_CODES


def test_importable_without_side_effects_or_dependencies():
    code = (
        "import sys, threading; before = set(sys.modules); import connector.protocol; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before} - {'connector'}; "
        "assert new <= sys.stdlib_module_names, new - sys.stdlib_module_names; "
        "assert threading.active_count() == 1"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=protocol.__file__.rsplit("/connector/", 1)[0])


def test_connector_never_imports_django():
    code = (
        "import sys, connector.cli, connector.supervisor, connector.wheel, connector.service, connector.metrics; "
        "assert not [m for m in sys.modules if m.startswith(('django', 'channels', 'rest_framework'))]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=protocol.__file__.rsplit("/connector/", 1)[0])
