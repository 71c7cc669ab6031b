"""/docs/api/ — Swagger UI for the v4 API, its assets served locally (drf-spectacular-sidecar)."""

from django.urls import path
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny

from controlplane.security_headers import API_DOCS_POLICY, CSP_HEADER


class ApiDocsView(SpectacularSwaggerSplitView):
    """Swagger UI with its init script served as a file (`?script`), so no inline script is needed."""

    permission_classes = [AllowAny]
    authentication_classes = []

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response[CSP_HEADER] = API_DOCS_POLICY
        return response


urlpatterns = [
    path("", ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
]
