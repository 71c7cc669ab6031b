"""Access pages under /o/<account_id>/access/ (included by controlplane/ui/urls.py into the `ui` namespace)."""

from django.urls import path

from access.ui import applications, directory, tools

urlpatterns = [
    path("access/", applications.ApplicationListView.as_view(), name="access"),
    path("access/apps/new/", applications.ApplicationFormView.as_view(), name="access-app-create"),
    path("access/apps/<str:app_id>/", applications.ApplicationDetailView.as_view(), name="access-app"),
    path("access/apps/<str:app_id>/edit/", applications.ApplicationFormView.as_view(), name="access-app-edit"),
    path("access/apps/<str:app_id>/revoke/", applications.ApplicationRevokeView.as_view(), name="access-app-revoke"),
    path("access/apps/<str:app_id>/delete/", applications.ApplicationDeleteView.as_view(), name="access-app-delete"),
    path(
        "access/apps/<str:app_id>/policies/<str:policy_id>/",
        directory.ApplicationPolicyEditView.as_view(),
        name="access-app-policy",
    ),
    path("access/policies/", directory.PolicyListView.as_view(), name="access-policies"),
    path("access/policies/new/", directory.PolicyEditView.as_view(), name="access-policy-create"),
    path("access/policies/<str:policy_id>/", directory.PolicyEditView.as_view(), name="access-policy"),
    path("access/policies/<str:policy_id>/delete/", directory.PolicyDeleteView.as_view(), name="access-policy-delete"),
    path("access/groups/", directory.GroupListView.as_view(), name="access-groups"),
    path("access/groups/new/", directory.GroupEditView.as_view(), name="access-group-create"),
    path("access/groups/<str:group_id>/", directory.GroupEditView.as_view(), name="access-group"),
    path("access/groups/<str:group_id>/delete/", directory.GroupDeleteView.as_view(), name="access-group-delete"),
    path("access/lists/", directory.ListListView.as_view(), name="access-lists"),
    path("access/lists/new/", directory.ListEditView.as_view(), name="access-list-create"),
    path("access/lists/<str:list_id>/", directory.ListEditView.as_view(), name="access-list"),
    path("access/lists/<str:list_id>/delete/", directory.ListDeleteView.as_view(), name="access-list-delete"),
    path("access/service-tokens/", directory.ServiceTokenListView.as_view(), name="access-service-tokens"),
    path(
        "access/service-tokens/<str:service_token_id>/created/",
        directory.ServiceTokenCreatedView.as_view(),
        name="access-service-token-created",
    ),
    path(
        "access/service-tokens/<str:service_token_id>/rotate/",
        directory.ServiceTokenActionView.as_view(action="rotate"),
        name="access-service-token-rotate",
    ),
    path(
        "access/service-tokens/<str:service_token_id>/refresh/",
        directory.ServiceTokenActionView.as_view(action="refresh"),
        name="access-service-token-refresh",
    ),
    path(
        "access/service-tokens/<str:service_token_id>/delete/",
        directory.ServiceTokenDeleteView.as_view(),
        name="access-service-token-delete",
    ),
    path("access/tester/", tools.PolicyTesterView.as_view(), name="access-tester"),
    path("access/logs/", tools.AccessLogView.as_view(), name="access-logs"),
    path("access/settings/", tools.AccessSettingsView.as_view(), name="access-settings"),
]
