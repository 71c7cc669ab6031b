from django.urls import path

from tunnels.download import connector_download

urlpatterns = [
    path("connector/download/<str:filename>", connector_download, name="connector-download"),
]
