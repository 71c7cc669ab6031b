from django.urls import include, path

urlpatterns = [
    path("client/v4/", include("controlplane.api.urls")),
    path("client/v4/", include("tunnels.api.urls")),
    path("", include("controlplane.ui.urls")),
]
