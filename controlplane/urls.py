from django.conf import settings
from django.urls import include, path

from controlplane.health import healthz, readyz

# A SuspiciousOperation anywhere (a body over DATA_UPLOAD_MAX_MEMORY_SIZE): a page, or the envelope on the API.
handler400 = "controlplane.ui.views.errors.bad_request"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("client/v4/", include("controlplane.api.urls")),
    path("client/v4/", include("tunnels.api.urls")),
    path("client/v4/", include("access.api.urls")),
    path("docs/api/", include("controlplane.api.docs_urls")),
    path("", include("access.urls")),
    path("", include("certificates.urls")),
    path("", include("tunnels.urls")),
    path("", include("controlplane.ui.urls")),
]

if settings.BENCH_ENDPOINTS:  # bench/api's ceiling; refused in production (controlplane/settings/base.py)
    from controlplane.health import bench_trivial

    urlpatterns.insert(0, path("bench/trivial", bench_trivial, name="bench-trivial"))

# Kept last, after every app's API include: any other /client/v4/ path gets a v4 JSON 404.
urlpatterns += [path("client/v4/", include("controlplane.api.fallback_urls"))]
