"""/client/v4/ — the Cloudflare v4-shaped API."""

from django.urls import path

from controlplane.api.views import accounts

urlpatterns = [
    path("accounts", accounts.AccountListView.as_view(), name="api-accounts"),
    path("accounts/<str:account_id>", accounts.AccountDetailView.as_view(), name="api-account"),
]
