"""Certificates pages under /o/<account_id>/ (included by controlplane/ui/urls.py into the `ui` namespace)."""

from django.urls import path

from certificates import ui

urlpatterns = [
    path("certificates/", ui.CertificateListView.as_view(), name="certificates"),
    path("zones/<str:zone_id>/certificates/", ui.ZoneCertificatesView.as_view(), name="zone-certificates"),
    path("zones/<str:zone_id>/certificates/new/", ui.CertificateCreateView.as_view(), name="certificate-create"),
    path("certificates/<str:certificate_id>/", ui.CertificateDetailView.as_view(), name="certificate"),
    path("certificates/<str:certificate_id>/key/", ui.CertificateKeyView.as_view(), name="certificate-key"),
    path(
        "certificates/<str:certificate_id>/download/",
        ui.CertificateDownloadView.as_view(),
        name="certificate-download",
    ),
    path("certificates/<str:certificate_id>/revoke/", ui.CertificateRevokeView.as_view(), name="certificate-revoke"),
]
