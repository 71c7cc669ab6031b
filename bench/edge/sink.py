"""The benchmark's upload origin: reads every request body to its end (Content-Length or chunked), then answers
`ok <bytes received>`, keep-alive. nginx cannot stand in here: its `return 200` answers before the body has
arrived and discards the rest, so an upload through a proxy would stop at the proxy's side.

    python -m bench.edge.sink --port 8093
"""

from __future__ import annotations

import argparse
import asyncio

MAX_HEAD = 64 * 1024


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head_done = False
        self.remaining = 0  # body bytes still due (Content-Length), or of the current chunk
        self.chunked = False
        self.chunk_state = "size"  # size | data | crlf | trailer
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.head_done and not self.chunked and not self.buffer:
            take = min(len(data), self.remaining)  # the hot path: body bytes, counted and dropped
            self.remaining -= take
            self.received += take
            if not self.remaining:
                self.answer()
                if take < len(data):
                    self.data_received(data[take:])
            return
        self.buffer += data
        self.process()

    def process(self) -> None:
        while True:
            if not self.head_done:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buffer) > MAX_HEAD:
                        self.fail()
                    return
                head = bytes(self.buffer[:end]).lower()
                del self.buffer[: end + 4]
                self.head_done = True
                self.received = 0
                self.chunked = b"transfer-encoding: chunked" in head
                self.remaining = 0
                self.chunk_state = "size"
                if not self.chunked:
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip() == b"content-length":
                            self.remaining = int(value)
                    if not self.remaining:
                        self.answer()
                        continue
            if not self.chunked:
                take = min(len(self.buffer), self.remaining)
                del self.buffer[:take]
                self.remaining -= take
                self.received += take
                if self.remaining:
                    return
                self.answer()
                continue
            if not self.chunk_step():
                return

    def chunk_step(self) -> bool:
        """One step of the chunked decoder; False when more bytes are needed."""
        if self.chunk_state == "data":
            take = min(len(self.buffer), self.remaining)
            del self.buffer[:take]
            self.remaining -= take
            self.received += take
            if self.remaining:
                return False
            self.chunk_state = "crlf"
            return True
        end = self.buffer.find(b"\r\n")
        if end < 0:
            return False
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        if self.chunk_state == "crlf":
            self.chunk_state = "size"
        elif self.chunk_state == "size":
            size = int(line.split(b";")[0], 16)
            self.remaining = size
            self.chunk_state = "data" if size else "trailer"
        elif not line:  # the blank line after the trailers
            self.answer()
        return True

    def answer(self) -> None:
        body = b"ok %d\n" % self.received
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\ncontent-type: text/plain\r\n\r\n%s" % (len(body), body)
        )
        self.head_done = False
        self.received = 0

    def fail(self) -> None:
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        self.transport.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.port))
    except ImportError:
        asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
