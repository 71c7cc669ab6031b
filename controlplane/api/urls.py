"""/client/v4/ — the Cloudflare v4-shaped API."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny

from controlplane.api.views import accounts, audit, dns, members, roles, tokens, zones

account = "accounts/<str:account_id>"

urlpatterns = [
    path("accounts", accounts.AccountListView.as_view(), name="api-accounts"),
    path(account, accounts.AccountDetailView.as_view(), name="api-account"),
    path(f"{account}/members", members.MemberListView.as_view(), name="api-members"),
    path(f"{account}/members/<str:member_id>", members.MemberDetailView.as_view(), name="api-member"),
    path(f"{account}/roles", roles.RoleListView.as_view(), name="api-roles"),
    path(f"{account}/roles/<str:role_id>", roles.RoleDetailView.as_view(), name="api-role"),
    path(f"{account}/audit_logs", audit.AuditLogListView.as_view(), name="api-audit-logs"),
    path(f"{account}/tokens", tokens.TokenListView.as_view(), name="api-tokens"),
    # Before tokens/<token_id>, which would otherwise swallow them.
    path(f"{account}/tokens/verify", tokens.AccountTokenVerifyView.as_view(), name="api-account-token-verify"),
    path(
        f"{account}/tokens/permission_groups",
        tokens.PermissionGroupListView.as_view(),
        name="api-token-permission-groups",
    ),
    path(f"{account}/tokens/<str:token_id>", tokens.TokenDetailView.as_view(), name="api-token"),
    path("user/tokens/verify", tokens.UserTokenVerifyView.as_view(), name="api-user-token-verify"),
    path("zones", zones.ZoneListView.as_view(), name="api-zones"),
    path("zones/<str:zone_id>", zones.ZoneDetailView.as_view(), name="api-zone"),
    path("zones/<str:zone_id>/dns_records", dns.DnsRecordListView.as_view(), name="api-dns-records"),
    path("zones/<str:zone_id>/dns_records/<str:record_id>", dns.DnsRecordDetailView.as_view(), name="api-dns-record"),
    path(
        "zones/<str:zone_id>/activation_check",
        zones.ZoneActivationCheckView.as_view(),
        name="api-zone-activation-check",
    ),
    path("", include("certificates.api.urls")),
    path(
        "schema",
        SpectacularAPIView.as_view(permission_classes=[AllowAny], authentication_classes=[]),
        name="api-schema",
    ),
]
