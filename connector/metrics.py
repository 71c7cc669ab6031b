"""The local readiness and metrics endpoint, as cloudflared has it: GET /ready, /metrics (Prometheus text),
/healthcheck. A tiny HTTP/1.1 server on asyncio streams; one request per connection."""

from __future__ import annotations

import asyncio
import json
import logging
import platform
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:
    from .supervisor import Supervisor

log = logging.getLogger("connector")

DEFAULT_HOST = "127.0.0.1"
# cloudflared's known metrics ports: the first free one is used when --metrics is not given.
DEFAULT_PORTS = (20241, 20242, 20243, 20244, 20245)
_MAX_REQUEST_HEAD = 8 * 1024
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request", 503: "Service Unavailable"}


def parse_address(value: str) -> tuple[str, int]:
    """ "host:port", "[v6]:port" or ":port" -> (host, port)."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not host:port")
    host = host.strip("[]") or DEFAULT_HOST
    return host, int(port)


def ready_body(supervisor: Supervisor) -> tuple[int, dict]:
    ready = supervisor.ready_connections
    status = 200 if ready > 0 else 503
    return status, {"status": status, "readyConnections": ready, "connectorId": supervisor.connector_id}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(supervisor: Supervisor) -> str:
    stats = supervisor.stats
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP zt_connector_{name} {help_text}")
        lines.append(f"# TYPE zt_connector_{name} {kind}")
        for labels, value in samples:
            text = repr(value) if isinstance(value, float) else str(int(value))
            lines.append(f"zt_connector_{name}{labels} {text}")

    build = (
        f'{{version="{_escape(__version__)}",python_version="{_escape(platform.python_version())}",'
        f'arch="{_escape(supervisor.arch)}",connector_id="{supervisor.connector_id}"}}'
    )
    metric("build_info", "gauge", "Build information of this connector.", [(build, 1)])
    metric("start_time_seconds", "gauge", "Start time of the process, in Unix seconds.", [("", stats.started_at)])
    metric(
        "connections_registered",
        "gauge",
        "Connections registered with the control plane.",
        [("", len(supervisor.registered_connections()))],
    )
    metric(
        "connections_ready",
        "gauge",
        "Registered connections that are not draining.",
        [("", supervisor.ready_connections)],
    )
    metric(
        "connections_desired",
        "gauge",
        "Connections this connector holds when healthy.",
        [("", supervisor.settings.ha_connections)],
    )
    metric("reconnects_total", "counter", "Connection attempts after the first, per slot.", [("", stats.reconnects)])
    metric(
        "config_version", "gauge", "Applied configuration version (-1: none yet).", [("", supervisor.config.version)]
    )
    metric("config_errors_total", "counter", "Configurations rejected as invalid.", [("", stats.config_errors)])
    metric(
        "protocol_errors_total",
        "counter",
        "Connections closed for a protocol violation.",
        [("", stats.protocol_errors)],
    )
    metric(
        "frames_sent_total",
        "counter",
        "Protocol frames sent, by kind.",
        [(f'{{kind="{kind}"}}', count) for kind, count in sorted(stats.frames_sent.items())],
    )
    metric(
        "frames_received_total",
        "counter",
        "Protocol frames received, by kind.",
        [(f'{{kind="{kind}"}}', count) for kind, count in sorted(stats.frames_received.items())],
    )
    metric(
        "heartbeat_rtt_seconds",
        "gauge",
        "Last heartbeat round trip, per connection.",
        [(f'{{conn_index="{index}"}}', rtt) for index, rtt in sorted(stats.heartbeat_rtt.items())],
    )
    return "\n".join(lines) + "\n"


class MetricsServer:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.server: asyncio.AbstractServer | None = None
        self.address: tuple[str, int] | None = None

    async def start(self, address: str | None) -> tuple[str, int]:
        """Listen on `address` ("host:port"), or on the first free known port, else any free port."""
        if address is not None:
            candidates = [parse_address(address)]
        else:
            candidates = [(DEFAULT_HOST, port) for port in DEFAULT_PORTS] + [(DEFAULT_HOST, 0)]
        error: OSError | None = None
        for host, port in candidates:
            try:
                self.server = await asyncio.start_server(self._handle, host, port, limit=_MAX_REQUEST_HEAD)
            except OSError as exc:
                error = exc
                continue
            sockname = self.server.sockets[0].getsockname()
            self.address = (sockname[0], sockname[1])
            log.info("Starting metrics server on %s:%s/metrics", *self.address)
            return self.address
        raise OSError(f"cannot listen for metrics on {address or 'any known port'}: {error}")

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            method, path = self._parse(head)
            status, content_type, body = self._route("GET" if method == "HEAD" else method, path)
            writer.write(
                (
                    f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode("ascii")
                + (b"" if method == "HEAD" else body)
            )
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, OSError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _parse(head: bytes) -> tuple[str, str]:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "", ""
        return parts[0], parts[1].split("?", 1)[0]

    def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if not method:
            return 400, "text/plain; charset=utf-8", b"Bad Request\n"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"Method Not Allowed\n"
        if path == "/ready":
            status, body = ready_body(self.supervisor)
            return status, "application/json", json.dumps(body).encode()
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", render_metrics(self.supervisor).encode()
        if path == "/healthcheck":
            return 200, "text/plain; charset=utf-8", b"OK\n"
        return 404, "text/plain; charset=utf-8", b"Not Found\n"
