"""Public Origin CA files (no sign-in): roots and CRLs. Included by controlplane/urls.py."""

from django.urls import path

from certificates import public

urlpatterns = [
    path("origin-ca/roots.pem", public.roots_pem, name="origin-ca-roots"),
    path(".well-known/origin-ca.pem", public.roots_pem, name="origin-ca-roots-well-known"),
    path("origin-ca/crl/<str:root_file>", public.root_crl, name="origin-ca-crl"),
]
