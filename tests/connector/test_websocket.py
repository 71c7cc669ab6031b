"""The RFC 6455 client against a real server (the `websockets` package) and against hand-made bad frames."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct

import pytest
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed as ServerClosed
from websockets.http11 import Response

from connector import websocket
from connector.websocket import ConnectionClosed, HandshakeError, InvalidURL, connect, mask_payload


class EchoServer:
    """Echoes every message; records the request headers and how the client closed."""

    def __init__(self) -> None:
        self.headers = None
        self.close = asyncio.get_running_loop().create_future()
        self.connection = None

    async def handler(self, ws) -> None:
        self.headers = ws.request.headers
        self.connection = ws
        try:
            async for message in ws:
                if message == "fragment please":
                    await ws.send(["frag", "mented ", "text"])
                elif message == "close please":
                    await ws.close(4010, "tunnel deleted")
                elif message == "ping please":
                    pong = await ws.ping(b"probe")
                    await asyncio.wait_for(pong, 2)
                    await ws.send("pong received")
                else:
                    await ws.send(message)
        except ServerClosed:
            pass
        finally:
            if not self.close.done():
                self.close.set_result((ws.close_code, ws.close_reason))


@pytest.fixture
async def echo():
    server = EchoServer()

    def process_request(connection, request):
        if request.path == "/forbidden":
            return Response(403, "Forbidden", Headers([("Content-Length", "13")]), b"token refused")
        return None

    async with serve(server.handler, "127.0.0.1", 0, max_size=None, process_request=process_request) as srv:
        server.url = f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
        yield server


async def test_messages_round_trip_with_headers(echo):
    ws = await connect(echo.url + "/connector/v1?x=1", headers={"Authorization": "Bearer abc"})
    await ws.send(b"\x00\x01binary")
    assert await ws.recv() == b"\x00\x01binary"
    await ws.send("texte é")
    assert await ws.recv() == "texte é"
    for size in (125, 126, 65535, 65536, 300_000):  # every length encoding, masked by us, checked by the server
        payload = os.urandom(size)
        await ws.send(payload)
        assert await ws.recv() == payload
    assert echo.headers["Authorization"] == "Bearer abc"
    assert ws.local_address[0] == "127.0.0.1"
    await ws.close(1001, "bye")
    assert await asyncio.wait_for(echo.close, 2) == (1001, "bye")
    assert ws.closed and ws.close_code == 1001


async def test_fragmented_message_and_server_ping(echo):
    ws = await connect(echo.url)
    await ws.send("fragment please")
    assert await ws.recv() == "fragmented text"
    await ws.send("ping please")
    assert await ws.recv() == "pong received"  # our recv() answered the server's ping
    await ws.close()


async def test_server_close_is_reported_with_code_and_reason(echo):
    ws = await connect(echo.url)
    await ws.send("close please")
    with pytest.raises(ConnectionClosed) as caught:
        await ws.recv()
    assert (caught.value.code, caught.value.reason) == (4010, "tunnel deleted")
    assert await asyncio.wait_for(echo.close, 2) == (4010, "")  # we echoed the code
    with pytest.raises(ConnectionClosed):
        await ws.send(b"late")


async def test_close_while_another_task_reads(echo):
    ws = await connect(echo.url)
    reader = asyncio.ensure_future(ws.recv())
    await asyncio.sleep(0.05)
    await ws.close(1001, "draining")
    with pytest.raises(ConnectionClosed):
        await reader
    assert await asyncio.wait_for(echo.close, 2) == (1001, "draining")


async def test_oversized_message_is_refused_with_1009(echo):
    ws = await connect(echo.url, max_message_size=1000)
    await ws.send(b"x" * 1001)  # the server echoes it back: too big for us
    with pytest.raises(ConnectionClosed) as caught:
        await ws.recv()
    assert caught.value.code == 1009
    code, _ = await asyncio.wait_for(echo.close, 2)
    assert code == 1009


async def test_refused_handshake(echo):
    with pytest.raises(HandshakeError) as caught:
        await connect(echo.url + "/forbidden")
    assert caught.value.status == 403
    assert caught.value.body == "token refused"


async def test_connection_refused_and_bad_urls():
    with pytest.raises(OSError):
        await connect("ws://127.0.0.1:1/")
    for url in ("http://x/", "ws:///nohost", "ws://user:pw@host/", "ws://host:99999/"):
        with pytest.raises(InvalidURL):
            await connect(url)


def test_parse_url():
    assert websocket.parse_url("wss://cp.example.com/connector/v1") == (True, "cp.example.com", 443, "/connector/v1")
    assert websocket.parse_url("ws://[::1]:8000") == (False, "::1", 8000, "/")
    assert websocket.parse_url("ws://h/p?q=1") == (False, "h", 80, "/p?q=1")


def test_both_mask_implementations_match_the_rfc_definition():
    from connector.websocket import _mask_stdlib

    for size in (0, 1, 3, 63, 64, 65, 1000, 65536 + 3):
        data, mask = os.urandom(size), os.urandom(4)
        expected = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        assert _mask_stdlib(data, mask) == expected and mask_payload(data, mask) == expected


def test_mask_matches_the_rfc_definition():
    for size in (0, 1, 3, 4, 5, 1000):
        data, mask = os.urandom(size), os.urandom(4)
        assert mask_payload(data, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_accept_key_rfc_example():
    assert websocket.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# ---------------------------------------------------------------------------------------------- a raw server


async def raw_server(frames: bytes, response_headers: str | None = None, linger: float = 2.0):
    """A server that completes the handshake by hand, then writes `frames` and reports what the client sent."""
    received = asyncio.get_running_loop().create_future()

    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(":", 1)[1].strip()
            for line in head.decode().split("\r\n")
            if line.lower().startswith("sec-websocket-key")
        )
        accept = base64.b64encode(hashlib.sha1((key + websocket.GUID).encode()).digest()).decode()
        headers = response_headers or f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}"
        writer.write(f"HTTP/1.1 101 Switching Protocols\r\n{headers}\r\n\r\n".encode() + frames)
        await writer.drain()
        try:
            data = await asyncio.wait_for(reader.read(1024), linger) if linger else b""
        except TimeoutError:
            data = b""
        if not received.done():
            received.set_result(data)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/", received


def client_close_code(data: bytes) -> int:
    """The close code in the client's first (masked) frame."""
    assert data[0] == 0x88, data
    length = data[1] & 0x7F
    mask = data[2:6]
    payload = mask_payload(data[6 : 6 + length], mask)
    return struct.unpack("!H", payload[:2])[0]


BAD_FRAMES = {
    "masked server frame": (b"\x82\x81abcd" + mask_payload(b"x", b"abcd"), 1002),
    "reserved bits": (b"\xc2\x01x", 1002),
    "unknown opcode": (b"\x83\x00", 1002),
    "fragmented ping": (b"\x09\x00", 1002),
    "long ping": (b"\x89\x7e\x00\x80" + b"x" * 128, 1002),
    "orphan continuation": (b"\x80\x01x", 1002),
    "interleaved message": (b"\x01\x01a\x02\x01b", 1002),
    "invalid utf-8 text": (b"\x81\x02\xff\xfe", 1007),
    "invalid close code": (b"\x88\x02\x03\xe7", 1002),  # 999
    "one-byte close": (b"\x88\x01\x03", 1002),
    "oversized length": (b"\x82\x7f" + struct.pack("!Q", 2**40), 1009),
}


@pytest.mark.parametrize("frames,code", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_protocol_violations_fail_the_connection(frames, code):
    server, url, received = await raw_server(frames)
    async with server:
        ws = await connect(url)
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), 2)
        assert caught.value.code == code
        assert client_close_code(await received) == code


async def test_handshake_with_a_wrong_accept_key_is_refused():
    server, url, _ = await raw_server(
        b"", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm9wZQ=="
    )
    async with server:
        with pytest.raises(HandshakeError, match="Sec-WebSocket-Accept"):
            await connect(url)


async def test_frames_sent_right_after_the_handshake_are_not_lost():
    server, url, _ = await raw_server(b"\x82\x03abc\x81\x02hi")
    async with server:
        ws = await connect(url)
        assert await ws.recv() == b"abc"
        assert await ws.recv() == "hi"
        ws.abort()


async def test_server_that_vanishes_gives_1006():
    server, url, _ = await raw_server(b"\x82\x05ab", linger=0)  # truncated frame, then the server closes
    async with server:
        ws = await connect(url)
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), 3)
        assert caught.value.code == 1006


# ---------------------------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A throwaway CA and a server certificate for localhost / 127.0.0.1."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "cert.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory / "ca.pem", directory / "cert.pem"


async def test_wss_verifies_the_server_certificate(tls_files):
    import ssl

    ca_file, cert_file = tls_files
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file)
    server = EchoServer()
    async with serve(server.handler, "127.0.0.1", 0, ssl=server_context) as srv:
        url = f"wss://localhost:{srv.sockets[0].getsockname()[1]}/connector/v1"
        # The system's CAs do not know this server: refused.
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(url)
        # With the CA file (--edge-ca-file) it is trusted.
        ws = await connect(url, ssl=ssl.create_default_context(cafile=str(ca_file)))
        await ws.send(b"over tls")
        assert await ws.recv() == b"over tls"
        await ws.close(1001)
        assert await asyncio.wait_for(server.close, 2) == (1001, "")
