from django.urls import path

from tunnels.status_socket import status_app

websocket_urlpatterns = [
    path("ws/accounts/<str:account_id>/tunnels/status", status_app),
]
