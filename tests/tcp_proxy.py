"""A loopback TCP proxy for end-to-end tests: connectors dial it, it forwards to the current server port. Tests
cut single connections through it (a network failure on one link) and re-point it at a restarted server."""

from __future__ import annotations

import asyncio
import threading

from tests.live_server import free_port


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.refuse_new = False  # while set, new connections are dropped at once (the path stays broken)
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse_new:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        pair = (writer, up_writer)
        self._pairs.append(pair)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        if pair in self._pairs:
            self._pairs.remove(pair)

    @property
    def open_pairs(self) -> int:
        return len(self._pairs)

    def cut_one(self) -> None:
        """Abort one proxied connection in both directions, as a failed network path would."""

        def cut() -> None:
            if self._pairs:
                client, upstream = self._pairs.pop(0)
                for writer in (client, upstream):
                    transport = writer.transport
                    transport.abort()

        self._loop.call_soon_threadsafe(cut)
