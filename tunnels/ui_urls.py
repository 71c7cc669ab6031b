"""Tunnel pages under /o/<account_id>/ (included by controlplane/ui/urls.py into the `ui` namespace)."""

from django.urls import path

from tunnels import views

urlpatterns = [
    path("tunnels/", views.TunnelListView.as_view(), name="tunnels"),
    path("tunnels/notifications/", views.NotificationsView.as_view(), name="tunnel-notifications"),
    path(
        "tunnels/notifications/<str:destination_id>/delete/",
        views.NotificationDeleteView.as_view(),
        name="tunnel-notification-delete",
    ),
    path("tunnels/<str:tunnel_id>/", views.TunnelDetailView.as_view(), name="tunnel"),
    path("tunnels/<str:tunnel_id>/rename/", views.TunnelRenameView.as_view(), name="tunnel-rename"),
    path("tunnels/<str:tunnel_id>/rotate/", views.TunnelRotateView.as_view(), name="tunnel-rotate"),
    path("tunnels/<str:tunnel_id>/disconnect/", views.TunnelDisconnectView.as_view(), name="tunnel-disconnect"),
    path("tunnels/<str:tunnel_id>/delete/", views.TunnelDeleteView.as_view(), name="tunnel-delete"),
    path("tunnels/<str:tunnel_id>/hostnames/new/", views.PublicHostnameView.as_view(), name="tunnel-hostname-add"),
    path(
        "tunnels/<str:tunnel_id>/hostnames/<str:index>/",
        views.PublicHostnameView.as_view(),
        name="tunnel-hostname-edit",
    ),
    path(
        "tunnels/<str:tunnel_id>/hostnames/<str:index>/delete/",
        views.PublicHostnameDeleteView.as_view(),
        name="tunnel-hostname-delete",
    ),
    path("connectors/", views.ConnectorStatusView.as_view(), name="connectors"),
]
