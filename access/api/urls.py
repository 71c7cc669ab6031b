from django.urls import path

from access.api import views, zone_views

base = "accounts/<str:account_id>/access"
zone_base = "zones/<str:zone_id>/access"

urlpatterns = [
    path(f"{base}/apps", views.ApplicationListView.as_view(), name="api-access-apps"),
    path(f"{base}/apps/<str:app_id>", views.ApplicationDetailView.as_view(), name="api-access-app"),
    path(
        f"{base}/apps/<str:app_id>/revoke_tokens",
        views.ApplicationRevokeTokensView.as_view(),
        name="api-access-app-revoke",
    ),
    path(
        f"{base}/apps/<str:app_id>/policies", views.ApplicationPolicyListView.as_view(), name="api-access-app-policies"
    ),
    path(
        f"{base}/apps/<str:app_id>/policies/<str:policy_id>",
        views.ApplicationPolicyDetailView.as_view(),
        name="api-access-app-policy",
    ),
    path(f"{base}/policies", views.PolicyListView.as_view(), name="api-access-policies"),
    path(f"{base}/policies/<str:policy_id>", views.PolicyDetailView.as_view(), name="api-access-policy"),
    path(f"{base}/groups", views.GroupListView.as_view(), name="api-access-groups"),
    path(f"{base}/groups/<str:group_id>", views.GroupDetailView.as_view(), name="api-access-group"),
    path(f"{base}/service_tokens", views.ServiceTokenListView.as_view(), name="api-access-service-tokens"),
    path(
        f"{base}/service_tokens/<str:service_token_id>",
        views.ServiceTokenDetailView.as_view(),
        name="api-access-service-token",
    ),
    path(
        f"{base}/service_tokens/<str:service_token_id>/refresh",
        views.ServiceTokenRefreshView.as_view(),
        name="api-access-service-token-refresh",
    ),
    path(
        f"{base}/service_tokens/<str:service_token_id>/rotate",
        views.ServiceTokenRotateView.as_view(),
        name="api-access-service-token-rotate",
    ),
    path(f"{base}/identity_providers", views.IdentityProviderListView.as_view(), name="api-access-idps"),
    path(f"{base}/identity_providers/<str:idp_id>", views.IdentityProviderDetailView.as_view(), name="api-access-idp"),
    path(f"{base}/organizations", views.OrganizationView.as_view(), name="api-access-organization"),
    path(f"{base}/organizations/revoke_user", views.RevokeUserView.as_view(), name="api-access-revoke-user"),
    path(f"{base}/keys", views.KeysView.as_view(), name="api-access-keys"),
    path(f"{base}/keys/rotate", views.KeysRotateView.as_view(), name="api-access-keys-rotate"),
    path(f"{base}/logs/access_requests", views.AccessRequestLogView.as_view(), name="api-access-logs"),
    path(f"{base}/policy_tester", views.PolicyTesterView.as_view(), name="api-access-policy-tester"),
    path("accounts/<str:account_id>/gateway/lists", views.ListListView.as_view(), name="api-access-lists"),
    path(
        "accounts/<str:account_id>/gateway/lists/<str:list_id>", views.ListDetailView.as_view(), name="api-access-list"
    ),
    # The zone-level variants (Cloudflare has both; reusable policies, keys, logs and lists are account-only).
    *[
        path(f"{zone_base}/{suffix}", view.as_view(), name=f"api-zone-access-{name}")
        for suffix, view, name in [
            ("apps", zone_views.ApplicationListView, "apps"),
            ("apps/<str:app_id>", zone_views.ApplicationDetailView, "app"),
            ("apps/<str:app_id>/revoke_tokens", zone_views.ApplicationRevokeTokensView, "app-revoke"),
            ("apps/<str:app_id>/policies", zone_views.ApplicationPolicyListView, "app-policies"),
            ("apps/<str:app_id>/policies/<str:policy_id>", zone_views.ApplicationPolicyDetailView, "app-policy"),
            ("groups", zone_views.GroupListView, "groups"),
            ("groups/<str:group_id>", zone_views.GroupDetailView, "group"),
            ("service_tokens", zone_views.ServiceTokenListView, "service-tokens"),
            ("service_tokens/<str:service_token_id>", zone_views.ServiceTokenDetailView, "service-token"),
            ("identity_providers", zone_views.IdentityProviderListView, "idps"),
            ("identity_providers/<str:idp_id>", zone_views.IdentityProviderDetailView, "idp"),
            ("organizations", zone_views.OrganizationView, "organization"),
            ("organizations/revoke_user", zone_views.RevokeUserView, "revoke-user"),
        ]
    ],
]
