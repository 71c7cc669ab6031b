"""/client/v4/zones/{zone_id}/access/… — the zone-level variants Cloudflare has beside the account paths (apps and
their policies, groups, service tokens, identity providers, organizations). They act in the zone's organisation with
the caller's Access scopes; applications are those of the zone (every domain under it), and an application created
or replaced here must keep every domain under the zone. Reusable policies, keys, logs, lists and the tester stay
account-only, as in Cloudflare."""

from __future__ import annotations

from typing import Any, cast

from django.http import HttpRequest, HttpResponseBase
from rest_framework.request import Request
from rest_framework.views import APIView

from access.api import views
from controlplane.access import OrgAccess
from controlplane.api.base import resolve_zone_access


class ZoneAccessMixin:
    """Resolves `zone_id` (404 for a zone the caller cannot see) into `self.zone` and its organisation; the account
    views' handlers then run unchanged (their `account_id` is None)."""

    zone_id: str

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        self.zone_id = kwargs.pop("zone_id")
        return super().dispatch(request, *args, account_id=None, **kwargs)  # type: ignore[misc,no-any-return]

    def resolve_access(self, request: Request, **kwargs: Any) -> OrgAccess:
        zone, access = resolve_zone_access(request, self.zone_id)
        self.zone = zone
        return access


def zone_variant(view: type[views.AccessView]) -> type[APIView]:
    return cast(type[APIView], type(f"Zone{view.__name__}", (ZoneAccessMixin, view), {"__module__": __name__}))


ApplicationListView = zone_variant(views.ApplicationListView)
ApplicationDetailView = zone_variant(views.ApplicationDetailView)
ApplicationRevokeTokensView = zone_variant(views.ApplicationRevokeTokensView)
ApplicationPolicyListView = zone_variant(views.ApplicationPolicyListView)
ApplicationPolicyDetailView = zone_variant(views.ApplicationPolicyDetailView)
GroupListView = zone_variant(views.GroupListView)
GroupDetailView = zone_variant(views.GroupDetailView)
ServiceTokenListView = zone_variant(views.ServiceTokenListView)
ServiceTokenDetailView = zone_variant(views.ServiceTokenDetailView)
IdentityProviderListView = zone_variant(views.IdentityProviderListView)
IdentityProviderDetailView = zone_variant(views.IdentityProviderDetailView)
OrganizationView = zone_variant(views.OrganizationView)
RevokeUserView = zone_variant(views.RevokeUserView)
