"""Origin CA routes under /client/v4/ (included by controlplane/api/urls.py)."""

from django.urls import path

from certificates.api import views

urlpatterns = [
    path("certificates", views.CertificateListView.as_view(), name="api-certificates"),
    path("origin_ca/roots", views.OriginCARootListView.as_view(), name="api-origin-ca-roots"),
    path(
        "accounts/<str:account_id>/origin_certificates",
        views.AccountCertificateListView.as_view(),
        name="api-account-certificates",
    ),
    path(
        "accounts/<str:account_id>/origin_certificates/<str:certificate_id>",
        views.AccountCertificateDetailView.as_view(),
        name="api-account-certificate",
    ),
    path("certificates/<str:certificate_id>", views.CertificateDetailView.as_view(), name="api-certificate"),
]
