from django.urls import include, path

urlpatterns = [
    path("client/v4/", include("controlplane.api.urls")),
    path("client/v4/", include("tunnels.api.urls")),
    path("docs/api/", include("controlplane.api.docs_urls")),
    path("", include("tunnels.urls")),
    path("", include("controlplane.ui.urls")),
]
