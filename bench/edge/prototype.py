"""The yardstick of issue 4's throughput target, rebuilt so that it is measured in the same run as our edge.

The issue sets "≥ 10,000 req/s at 50 connections (beat the minimal prototype)": on the machine where the baselines
were taken (../shared/reference/perf-baselines.md, row (d)), a minimal tunnel, "aiohttp + uvloop edge, one
websocket, binary framing, aiohttp connector", served 7,600–7,700 req/s. These machines are shared and their speed
moves by half from one minute to the next, so bench/edge runs that same design beside our edge and reports the
ratio of the two, which does not depend on how fast the machine is at that moment.

This is the prototype, not project code: no flow control, whole bodies in memory, no errors handled beyond
answering 502, one websocket, no auth. Two roles of one module:

    python -m bench.edge.prototype edge --port 8080
    python -m bench.edge.prototype connector --edge http://127.0.0.1:8080 --origin http://127.0.0.1:8081

The edge answers 503 until the connector is connected. Framing (big-endian): a request is
``u32 id, u16 len(method) method, u16 len(target) target, u32 len(headers) headers, body`` and a response is
``u32 id, u16 status, u32 len(headers) headers, body``; headers are ``name: value`` lines.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import struct
import sys

import aiohttp
import uvloop
from aiohttp import web

TUNNEL_PATH = "/_prototype/tunnel"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}


def pack_headers(headers) -> bytes:
    return "\r\n".join(f"{k}: {v}" for k, v in headers.items() if k.lower() not in HOP_BY_HOP).encode("latin-1")


def unpack_headers(data: bytes) -> list[tuple[str, str]]:
    if not data:
        return []
    return [tuple(line.split(": ", 1)) for line in data.decode("latin-1").split("\r\n")]  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------- edge


class PrototypeEdge:
    def __init__(self) -> None:
        self.tunnel: web.WebSocketResponse | None = None
        self.pending: dict[int, asyncio.Future] = {}
        self.ids = itertools.count(1)

    async def tunnel_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.tunnel = ws
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.BINARY:
                    continue
                data = message.data
                stream_id, status, headers_len = struct.unpack_from("!IHI", data)
                future = self.pending.pop(stream_id, None)
                if future is not None and not future.done():
                    headers = unpack_headers(data[10 : 10 + headers_len])
                    future.set_result((status, headers, data[10 + headers_len :]))
        finally:
            if self.tunnel is ws:
                self.tunnel = None
        return ws

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        if request.path == TUNNEL_PATH:
            return await self.tunnel_handler(request)
        tunnel = self.tunnel
        if tunnel is None:
            return web.Response(status=503, text="no connector\n")
        stream_id = next(self.ids)
        method = request.method.encode()
        target = request.raw_path.encode("latin-1")
        headers = pack_headers(request.headers)
        body = await request.read()
        frame = struct.pack("!IH", stream_id, len(method)) + method + struct.pack("!H", len(target)) + target
        frame += struct.pack("!I", len(headers)) + headers + body
        future = asyncio.get_running_loop().create_future()
        self.pending[stream_id] = future
        await tunnel.send_bytes(frame)
        status, response_headers, response_body = await future
        return web.Response(status=status, headers=response_headers, body=response_body)


def run_edge(port: int) -> None:
    edge = PrototypeEdge()
    app = web.Application(client_max_size=0)
    app.router.add_route("*", "/{tail:.*}", edge.proxy)
    web.run_app(
        app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=4096, loop=uvloop.new_event_loop()
    )


# ---------------------------------------------------------------------------------------------- connector


async def run_connector(edge_url: str, origin: str) -> None:
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), auto_decompress=False, skip_auto_headers=("User-Agent",)
    ) as session:
        async with session.ws_connect(edge_url.rstrip("/") + TUNNEL_PATH, max_msg_size=0) as ws:

            async def handle(data: bytes) -> None:
                stream_id, method_len = struct.unpack_from("!IH", data)
                offset = 6
                method = data[offset : offset + method_len].decode()
                offset += method_len
                (target_len,) = struct.unpack_from("!H", data, offset)
                offset += 2
                target = data[offset : offset + target_len].decode("latin-1")
                offset += target_len
                (headers_len,) = struct.unpack_from("!I", data, offset)
                offset += 4
                headers = unpack_headers(data[offset : offset + headers_len])
                body = data[offset + headers_len :]
                try:
                    async with session.request(method, origin + target, headers=headers, data=body or None) as r:
                        payload = await r.read()
                        status, out_headers = r.status, pack_headers(r.headers)
                except aiohttp.ClientError as exc:
                    status, out_headers, payload = 502, b"", str(exc).encode()
                await ws.send_bytes(struct.pack("!IHI", stream_id, status, len(out_headers)) + out_headers + payload)

            tasks: set[asyncio.Task] = set()
            async for message in ws:
                if message.type == aiohttp.WSMsgType.BINARY:
                    task = asyncio.ensure_future(handle(message.data))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role", required=True)
    edge = sub.add_parser("edge")
    edge.add_argument("--port", type=int, required=True)
    connector = sub.add_parser("connector")
    connector.add_argument("--edge", required=True, help="the prototype edge's base URL")
    connector.add_argument("--origin", required=True, help="the origin's base URL")
    args = parser.parse_args(argv)
    if args.role == "edge":
        run_edge(args.port)
    else:
        uvloop.run(run_connector(args.edge, args.origin))
    return 0


if __name__ == "__main__":
    sys.exit(main())
