"""ASGI entry point.

Requests for the control plane's own hosts (settings.CONTROL_PLANE_HOSTS and team domains) go to Django (HTTP)
and to the websocket routes; the connector endpoint is routed before any session or origin middleware (it
authenticates with its token and sends no Origin). The peer endpoint (dataplane/peers.py: another instance forwarding
requests for tunnels connected here) is routed by path and its EdgePeer authorization, whatever the Host. Every
other Host is a public hostname: the edge carries it down its tunnel without entering Django's request machinery.
"""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

from controlplane.serving import freeze_startup_heap, get_sync_asgi_application  # noqa: E402

# Django's HTTP requests: the sync middleware chain and view, one hand-off to a thread pool per request.
django_asgi_app = get_sync_asgi_application()

if "daphne.server" in sys.modules:  # served by daphne: bodies streamed with bounded memory (see the module)
    from edge.daphne_flow import install as install_daphne_flow

    install_daphne_flow()

from channels.routing import URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from channels.sessions import SessionMiddlewareStack  # noqa: E402

from connector.protocol import WEBSOCKET_PATH  # noqa: E402
from controlplane.routing import websocket_urlpatterns  # noqa: E402
from controlplane.second_factor import SessionUserMiddleware  # noqa: E402
from dataplane import peers, relay  # noqa: E402
from dataplane.connector_socket import connector_app  # noqa: E402
from edge.app import edge_application  # noqa: E402
from edge.headers import is_control_plane_host, request_host  # noqa: E402

# The signed-in user and their second factor, resolved as for an HTTP request (controlplane/second_factor.py).
browser_websockets = AllowedHostsOriginValidator(
    SessionMiddlewareStack(SessionUserMiddleware(URLRouter(websocket_urlpatterns)))
)


async def application(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        return await edge_application(scope, receive, send)
    if not peers.listen_port_known():
        peers.note_server(scope)  # the port this process serves on, for the address it advertises to its peers
    if kind == "websocket" and peers.is_peer_request(scope):
        return await relay.peer_app(scope, receive, send)
    host, _ = request_host(scope)
    if kind == "websocket" and scope["path"] == WEBSOCKET_PATH and is_control_plane_host(host):
        return await connector_app(scope, receive, send)
    if not is_control_plane_host(host):
        return await edge_application(scope, receive, send)
    if kind == "http":
        return await django_asgi_app(scope, receive, send)
    return await browser_websockets(scope, receive, send)


# Last, once everything above is imported: keep start-up's objects out of the garbage collector's passes.
freeze_startup_heap()
