"""ASGI entry point.

HTTP goes to Django. Websockets: the connector endpoint is routed before any session or origin middleware (it
authenticates with its token and sends no Origin), browser sockets go through the origin check and the session.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from connector.protocol import WEBSOCKET_PATH  # noqa: E402
from controlplane.routing import websocket_urlpatterns  # noqa: E402
from tunnels.endpoints import connector_app  # noqa: E402

browser_websockets = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))


async def websocket_router(scope, receive, send):
    if scope["path"] == WEBSOCKET_PATH:
        return await connector_app(scope, receive, send)
    return await browser_websockets(scope, receive, send)


application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_router})
