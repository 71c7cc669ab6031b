"""Tunnel pages under /o/<account_id>/ (included by controlplane/ui/urls.py into the `ui` namespace)."""

from django.urls import path

from tunnels import ui

urlpatterns = [
    path("tunnels/", ui.TunnelListView.as_view(), name="tunnels"),
    path("tunnels/notifications/", ui.NotificationsView.as_view(), name="tunnel-notifications"),
    path(
        "tunnels/notifications/<str:destination_id>/delete/",
        ui.NotificationDeleteView.as_view(),
        name="tunnel-notification-delete",
    ),
    path("tunnels/<str:tunnel_id>/", ui.TunnelDetailView.as_view(), name="tunnel"),
    path("tunnels/<str:tunnel_id>/rename/", ui.TunnelRenameView.as_view(), name="tunnel-rename"),
    path("tunnels/<str:tunnel_id>/rotate/", ui.TunnelRotateView.as_view(), name="tunnel-rotate"),
    path("tunnels/<str:tunnel_id>/disconnect/", ui.TunnelDisconnectView.as_view(), name="tunnel-disconnect"),
    path("tunnels/<str:tunnel_id>/delete/", ui.TunnelDeleteView.as_view(), name="tunnel-delete"),
    path("tunnels/<str:tunnel_id>/hostnames/new/", ui.PublicHostnameView.as_view(), name="tunnel-hostname-add"),
    path(
        "tunnels/<str:tunnel_id>/hostnames/<str:index>/",
        ui.PublicHostnameView.as_view(),
        name="tunnel-hostname-edit",
    ),
    path(
        "tunnels/<str:tunnel_id>/hostnames/<str:index>/delete/",
        ui.PublicHostnameDeleteView.as_view(),
        name="tunnel-hostname-delete",
    ),
    path("connectors/", ui.ConnectorStatusView.as_view(), name="connectors"),
]
