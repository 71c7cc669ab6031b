"""An accepted ASGI websocket with close bookkeeping: the browsers' status socket (status_socket.py), the connector
endpoint (dataplane/connector_socket.py) and the peer link's endpoint (dataplane/peers.py) each wrap theirs in it."""

from __future__ import annotations


class WebSocket:
    """The ASGI send/receive of one accepted websocket, with close bookkeeping."""

    def __init__(self, receive, send) -> None:
        self.receive = receive
        self._send = send
        self.closed = False

    async def send_bytes(self, data: bytes) -> None:
        if not self.closed:
            await self._send({"type": "websocket.send", "bytes": data})

    async def send_text(self, text: str) -> None:
        if not self.closed:
            await self._send({"type": "websocket.send", "text": text})

    async def close(self, code: int, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            await self._send({"type": "websocket.close", "code": int(code), "reason": reason[:120]})
