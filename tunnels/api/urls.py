from django.urls import path

from tunnels.api import views

base = "accounts/<str:account_id>/cfd_tunnel"

urlpatterns = [
    path(base, views.TunnelListView.as_view(), name="api-tunnels"),
    path(f"{base}/<str:tunnel_id>", views.TunnelDetailView.as_view(), name="api-tunnel"),
    path(f"{base}/<str:tunnel_id>/token", views.TunnelTokenView.as_view(), name="api-tunnel-token"),
    path(f"{base}/<str:tunnel_id>/token/rotate", views.TunnelRotateView.as_view(), name="api-tunnel-rotate"),
    path(f"{base}/<str:tunnel_id>/configurations", views.TunnelConfigurationView.as_view(), name="api-tunnel-config"),
    path(f"{base}/<str:tunnel_id>/connections", views.TunnelConnectionsView.as_view(), name="api-tunnel-connections"),
    path(f"{base}/<str:tunnel_id>/hostnames", views.TunnelHostnamesView.as_view(), name="api-tunnel-hostnames"),
    path(
        f"{base}/<str:tunnel_id>/origin_errors", views.TunnelOriginErrorsView.as_view(), name="api-tunnel-origin-errors"
    ),
    path(
        f"{base}/<str:tunnel_id>/hostnames/<str:index>", views.TunnelHostnameView.as_view(), name="api-tunnel-hostname"
    ),
    path(
        f"{base}/<str:tunnel_id>/connectors/<str:connector_id>",
        views.TunnelConnectorView.as_view(),
        name="api-tunnel-connector",
    ),
]
