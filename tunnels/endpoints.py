"""The websocket endpoints, by their earlier module: the connector socket (tunnels/connector_socket.py) and the
browsers' live status socket (tunnels/status_socket.py)."""

from tunnels.connector_socket import HELLO_TIMEOUT, WebSocket, connector_app, sync_sender
from tunnels.status_socket import (
    WatcherCloseCode,
    WatcherRefusal,
    authorise_watcher,
    reauthorise_watcher,
    status_app,
)

__all__ = [
    "HELLO_TIMEOUT",
    "WatcherCloseCode",
    "WatcherRefusal",
    "WebSocket",
    "authorise_watcher",
    "connector_app",
    "reauthorise_watcher",
    "status_app",
    "sync_sender",
]
