"""The team domain's Access pages; served only on `<team>.<AUTH_DOMAIN>` (access.middleware)."""

from django.urls import path

from access import views

urlpatterns = [
    path("cdn-cgi/access/login/<str:app_host>", views.login, name="access-login"),
    path("cdn-cgi/access/certs", views.certs, name="access-certs"),
    path("cdn-cgi/access/get-identity", views.get_identity, name="access-get-identity"),
    path("cdn-cgi/access/logout", views.logout, name="access-logout"),
]
