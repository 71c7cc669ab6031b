"""Websocket routes of every app (each app exports `websocket_urlpatterns`)."""

from tunnels.routing import websocket_urlpatterns as tunnel_patterns

websocket_urlpatterns: list = [*tunnel_patterns]
