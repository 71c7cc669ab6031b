"""ASGI entry point of the edge role alone: public hostnames and the connectors' websockets, nothing else.

    uvicorn edge.asgi:application --loop uvloop --http edge.http:HttpToolsProtocol --ws websockets-sansio \
        --lifespan on --no-proxy-headers --no-server-header --no-date-header

(`edge.http:HttpToolsProtocol` is uvicorn's httptools protocol with a response's head and body in one write;
`--no-proxy-headers`: the edge trusts X-Forwarded-For only from TRUSTED_PROXY_COUNT proxies, itself; no
server/date header of uvicorn's: the origin's pass through, and uvicorn's would be a second Server and Date.)

Production runs it as its own processes (docker-compose.yml `edge`): uvicorn with uvloop + httptools serves a
trivial ASGI app ~5x faster than daphne on these machines, and its `send()` applies backpressure
(docs/benchmarks.md, "Edge"). The control plane (UI, API, status websockets) stays in `controlplane.asgi` under
daphne; this module never builds Django's request handler, so no request here enters Django's view machinery.

Per request:

* a Host that is a public hostname → the edge (`edge.app`), HTTP and websockets alike;
* the peer link `/edge/v1/peer` (another instance forwarding requests for tunnels connected here, whatever the
  Host; dataplane/peers.py);
* a control-plane host (CONTROL_PLANE_HOSTS, which includes CONNECTOR_EDGE_URL's host, and team domains):
  the connector websocket `/connector/v1`, the probes `/healthz` and `/readyz` (containers call loopback), and
  for anything else **421 Misdirected Request** naming the control plane's URL: this process does not serve it.

Several processes (edge and web) share connectors, configs and status through the channel layer, so a separate
edge role needs the production topology (REDIS_URL); an embedded single-process install serves everything from
`controlplane.asgi`, which runs under uvicorn as well.
"""

from __future__ import annotations

import json
import logging
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402

from connector.protocol import WEBSOCKET_PATH  # noqa: E402
from dataplane import peers, relay  # noqa: E402
from dataplane.connector_socket import connector_app  # noqa: E402
from dataplane.hub import get_hub  # noqa: E402
from edge.app import edge_application  # noqa: E402
from edge.headers import is_control_plane_host, request_host  # noqa: E402

logger = logging.getLogger("edge")

PROBES = ("/healthz", "/readyz")


async def application(scope, receive, send) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        return await lifespan(receive, send)
    if not peers.listen_port_known():
        peers.note_server(scope)  # the port this process serves on, for the address it advertises to its peers
    host, raw_host = request_host(scope)
    if kind == "websocket" and peers.is_peer_request(scope):
        return await relay.peer_app(scope, receive, send)  # another instance forwarding requests (dataplane/relay.py)
    if not is_control_plane_host(host):
        if kind == "http":
            return await edge_application.http(scope, receive, send, host, raw_host)
        return await edge_application(scope, receive, send)
    if kind == "websocket":
        if scope["path"] == WEBSOCKET_PATH:
            return await connector_app(scope, receive, send)
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": 1008})
        return None
    if kind == "http":
        if scope["path"] in PROBES:
            return await probe(scope, send)
        return await misdirected(host, send)
    return None


async def lifespan(receive, send) -> None:
    """Start the hub and load the route table before the first request (uvicorn --lifespan on)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await edge_application.hub()
                await edge_application.reload_routes()
            except Exception as exc:
                logger.exception("edge start-up failed")
                await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def probe(scope, send) -> None:
    checks: dict[str, str] = {}
    if scope["path"] == "/readyz":
        hub = get_hub()
        try:
            await hub.db(_database_ok)
            checks["database"] = "ok"
        except Exception as exc:  # any failure means not ready; say which
            checks["database"] = f"error: {exc.__class__.__name__}"
        checks["hub"] = "ok" if hub.loop is not None else "not started"
    ready = all(value == "ok" for value in checks.values())
    body = json.dumps({"status": "ok" if ready else "unavailable", "checks": checks}).encode()
    await _answer(send, 200 if ready else 503, body, b"application/json")


def _database_ok() -> None:
    from django.db import close_old_connections, connection

    close_old_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def misdirected(host: str, send) -> None:
    body = (
        f"421 Misdirected Request: {host or 'this host'} is the control plane's, and this process is the edge: it "
        f"serves public hostnames and connector websockets ({WEBSOCKET_PATH}) only. The control plane (UI, API) "
        f"is at {settings.PUBLIC_URL}.\n"
    ).encode()
    await _answer(send, 421, body, b"text/plain; charset=utf-8")


async def _answer(send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", b"%d" % len(body)),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
