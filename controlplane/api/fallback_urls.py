"""The last pattern under /client/v4/: every path no API matched answers a v4 404."""

from django.urls import path

from controlplane.api.views.fallback import UnknownEndpointView

urlpatterns = [path("<path:unknown>", UnknownEndpointView.as_view(), name="api-unknown")]
