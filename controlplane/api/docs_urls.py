"""/docs/api/ — Swagger UI for the v4 API, its assets served locally (drf-spectacular-sidecar)."""

from django.urls import path
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework.permissions import AllowAny

urlpatterns = [
    path(
        "",
        SpectacularSwaggerView.as_view(url_name="api-schema", permission_classes=[AllowAny], authentication_classes=[]),
        name="api-docs",
    ),
]
