"""A real origin for the edge's end-to-end tests, run as its own process (`python -m tests.edge.e2e_origin NAME`),
so that the test process, the server and the connector each have their own interpreter.

It listens on three loopback ports and prints them as one JSON line on stdout:

* `http`: HTTP/1.1 with keep-alive, content-length and chunked request bodies, streamed both ways;
* `ws`: a websocket echo server (the `websockets` library), choosing a subprotocol, closing with a code on
  request, slow to start reading on `/slow`, sending N MiB as fast as it can on `/flood?mib=N`;
* `tls`: the same HTTP over TLS with a self-signed certificate (no CA knows it: verification must fail).

Gates let a test hold an answer until it says so: `/sse?gate=g` sends its first event, then waits until
`/release?gate=g` (called on the origin directly, not through the edge) before sending the second. Every wait is
bounded, so nothing here can hang a test.

Routes (the path without the query):

| path | answer |
|---|---|
| `/echo`, `/echo/...` | JSON: method, target, headers (as received, in order), body length, body (latin-1), chunked |
| `/respond?status=N` | status N, two Set-Cookie and two X-Multi headers, a fixed body |
| `/download?size=N[&chunked=1][&tag=t]` | N bytes of a repeating pattern (see `pattern()`), generated on the fly |
| `/progress?tag=t` | JSON: bytes of download t written so far, and its state (sending, done, aborted) |
| `/upload[?rate=N]` | reads the body as it comes (at N bytes/s); JSON: size and crc32 |
| `/sse?gate=g`, `/chunks?gate=g` | an event stream / a chunked body in two parts, the second after the gate |
| `/hold?gate=g` | no head until the gate opens (then 200 "released") |
| `/partial?gate=g` | head and half of a 2,000,000-byte body, the rest after the gate |
| `/sleep?s=N` | answers after N seconds |
| `/whoami` | the origin's name |
| `/release?gate=g`, `/waiting?gate=g` | open a gate; whether a request waits on it ("yes"/"no") |
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import ssl
import sys
import tempfile
import zlib
from urllib.parse import parse_qs, urlsplit

import websockets
from websockets.asyncio.server import serve

GATE_TIMEOUT = 20.0
BLOCK = 64 * 1024


def pattern(size: int = BLOCK) -> bytes:
    """The repeating block downloads are made of (tests rebuild it to check what they received)."""
    return bytes(range(256)) * (size // 256)


class Gates:
    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}
        self.waiting: set[str] = set()

    def get(self, name: str) -> asyncio.Event:
        return self.events.setdefault(name, asyncio.Event())

    async def wait(self, name: str) -> bool:
        self.waiting.add(name)
        try:
            await asyncio.wait_for(self.get(name).wait(), GATE_TIMEOUT)
            return True
        except TimeoutError:
            return False
        finally:
            self.waiting.discard(name)


class Origin:
    def __init__(self, name: str) -> None:
        self.name = name
        self.gates = Gates()
        self.progress: dict[str, list] = {}  # download tag -> [bytes written, state]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head[:-4].decode("latin-1").split("\r\n")
                method, target, _version = lines[0].split(" ", 2)
                headers = []
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers.append((name.strip(), value.strip()))
                keep = await self.handle(method, target, headers, reader, writer)
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def handle(self, method, target, headers, reader, writer) -> bool:
        url = urlsplit(target)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        lower = {name.lower(): value for name, value in headers}
        path = url.path
        if path == "/upload":
            size, crc = 0, 0
            rate = float(query.get("rate", "0"))  # bytes per second, 0 = as fast as it comes
            started = asyncio.get_running_loop().time()
            async for chunk in body_chunks(reader, lower):
                size += len(chunk)
                crc = zlib.crc32(chunk, crc)
                if rate:
                    await asyncio.sleep(max(0.0, started + size / rate - asyncio.get_running_loop().time()))
            respond(writer, 200, json.dumps({"size": size, "crc32": crc}).encode(), "application/json")
            return True
        body = b"".join([chunk async for chunk in body_chunks(reader, lower)])
        if path == "/echo" or path.startswith("/echo/"):
            seen = {
                "origin": self.name,
                "method": method,
                "target": target,
                "headers": headers,
                "body_length": len(body),
                "body": body.decode("latin-1"),
                "chunked": lower.get("transfer-encoding", "").lower() == "chunked",
            }
            respond(writer, 200, json.dumps(seen).encode(), "application/json")
        elif path == "/respond":
            status = int(query.get("status", "200"))
            extra = [
                ("Set-Cookie", "a=1; Path=/"),
                ("Set-Cookie", "b=2; Path=/"),
                ("X-Multi", "one"),
                ("X-Multi", "two"),
            ]
            respond(writer, status, b"exactly these bytes\x00\xff", "application/octet-stream", extra)
        elif path == "/download":
            size = int(query["size"])
            if method == "HEAD":
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: %d\r\n\r\n" % size
                )
            else:
                await self.download(writer, size, chunked=query.get("chunked") == "1", tag=query.get("tag", ""))
        elif path in ("/sse", "/chunks"):
            sse = path == "/sse"
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: "
                + (b"text/event-stream" if sse else b"text/plain")
                + b"\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            first, second = (
                (b"id: 1\ndata: first\n\n", b"id: 2\ndata: second\n\n") if sse else (b"part one;", b"part two")
            )
            write_chunk(writer, first)
            await writer.drain()
            released = await self.gates.wait(query["gate"])
            write_chunk(writer, second if released else b"gate timed out")
            writer.write(b"0\r\n\r\n")
        elif path == "/hold":
            await self.gates.wait(query["gate"])
            respond(writer, 200, b"released", "text/plain")
        elif path == "/partial":
            half = pattern() * 16  # 1 MiB
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (2 * len(half)))
            writer.write(half)
            await writer.drain()
            if await self.gates.wait(query["gate"]):
                writer.write(half)
        elif path == "/release":
            self.gates.get(query["gate"]).set()
            respond(writer, 200, b"ok", "text/plain")
        elif path == "/progress":
            sent, state = self.progress.get(query["tag"], [0, "unknown"])
            respond(writer, 200, json.dumps({"sent": sent, "state": state}).encode(), "application/json")
        elif path == "/waiting":
            respond(writer, 200, b"yes" if query["gate"] in self.gates.waiting else b"no", "text/plain")
        elif path == "/sleep":
            await asyncio.sleep(float(query.get("s", "1")))
            respond(writer, 200, b"slept", "text/plain")
        elif path == "/whoami":
            respond(writer, 200, self.name.encode(), "text/plain")
        else:
            respond(writer, 404, b"no such path", "text/plain")
        return True

    async def download(self, writer: asyncio.StreamWriter, size: int, *, chunked: bool, tag: str = "") -> None:
        progress = self.progress[tag] = [0, "sending"]
        try:
            await self._download(writer, size, chunked, progress)
            progress[1] = "done"
        except (ConnectionError, asyncio.CancelledError):
            progress[1] = "aborted"
            raise

    async def _download(self, writer: asyncio.StreamWriter, size: int, chunked: bool, progress: list) -> None:
        block = pattern()
        if chunked:
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            )
        else:
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: %d\r\n\r\n" % size
            )
        left = size
        while left > 0:
            piece = block if left >= len(block) else block[:left]
            left -= len(piece)
            if chunked:
                write_chunk(writer, piece)
            else:
                writer.write(piece)
            await writer.drain()
            progress[0] += len(piece)
        if chunked:
            writer.write(b"0\r\n\r\n")


async def body_chunks(reader: asyncio.StreamReader, headers: dict[str, str]):
    length = headers.get("content-length")
    if length is not None:
        async for chunk in exactly(reader, int(length)):
            yield chunk
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return
            async for chunk in exactly(reader, size):
                yield chunk
            await reader.readexactly(2)


async def exactly(reader: asyncio.StreamReader, size: int):
    """`size` bytes as they arrive, in pieces of at most BLOCK."""
    left = size
    while left > 0:
        chunk = await reader.read(min(left, BLOCK))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", left)
        left -= len(chunk)
        yield chunk


def write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.writelines([b"%x\r\n" % len(data), data, b"\r\n"])


def respond(writer, status: int, body: bytes, content_type: str, extra: list[tuple[str, str]] | None = None) -> None:
    lines = [f"HTTP/1.1 {status} Whatever", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in extra or []]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


# ------------------------------------------------------------------------------------------------ websockets


async def ws_echo(ws) -> None:
    """Echo every message as it came (text stays text); "close:<code>:<reason>" closes with that code. On the
    path /slow the origin reads nothing for two seconds first, so that what the edge sends meanwhile piles up."""
    try:
        if ws.request.path.startswith("/flood"):  # /flood?mib=N: N MiB of binary messages, then close
            block = pattern(256 * 1024)
            for _ in range(int(ws.request.path.split("=")[1]) * 4):
                await ws.send(block)
            await ws.close(1000, "flood done")
            return
        if ws.request.path.startswith("/slow"):
            await asyncio.sleep(2)
        async for message in ws:
            if isinstance(message, str) and message.startswith("close:"):
                _, code, reason = message.split(":", 2)
                await ws.close(int(code), reason)
                return
            await ws.send(message)
    except websockets.exceptions.ConnectionClosed:
        return


def select_subprotocol(connection, offered):
    return "chat.v2" if "chat.v2" in offered else None


# ------------------------------------------------------------------------------------------------ TLS


def self_signed_context() -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "origin.internal")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("origin.internal")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    with tempfile.TemporaryDirectory() as folder:
        cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        with open(cert_path, "wb") as handle:
            handle.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as handle:
            handle.write(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)
    return context


async def main(name: str) -> None:
    origin = Origin(name)
    http = await asyncio.start_server(origin.serve, "127.0.0.1", 0, limit=256 * 1024)
    tls = await asyncio.start_server(origin.serve, "127.0.0.1", 0, ssl=self_signed_context())
    ws = await serve(
        ws_echo, "127.0.0.1", 0, select_subprotocol=select_subprotocol, max_size=2**24, max_queue=4, write_limit=2**16
    )
    ports = {
        "http": http.sockets[0].getsockname()[1],
        "tls": tls.sockets[0].getsockname()[1],
        "ws": next(iter(ws.sockets)).getsockname()[1],
    }
    print(json.dumps(ports), flush=True)
    # Until the test closes our stdin (or dies): never outlive it.
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "origin"))
