"""Base classes every organisation-scoped API view inherits. The organisation and the caller's scopes are
resolved in `initial()`, before any handler runs; querysets come from the model's scoped manager."""

from __future__ import annotations

from typing import Any, ClassVar

from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.views import APIView

from controlplane.access import OrgAccess, accessible_organisations, resolve_org_access
from controlplane.actors import Actor
from controlplane.api.permissions import IsAuthenticatedPrincipal
from controlplane.choices import Level, Resource
from controlplane.models import ApiToken, Organisation, Zone
from controlplane.selectors import zone_get


def request_token(request: Request) -> ApiToken | None:
    return request.auth if isinstance(request.auth, ApiToken) else None


def request_user(request: Request) -> Any:
    return None if request_token(request) is not None else request.user


def request_actor(request: Request) -> Actor:
    """Who acts, for the audit log."""
    return Actor.from_request(request)


class PrincipalView(APIView):
    """Any authenticated caller (token or signed-in user); no organisation in the URL."""

    permission_classes: ClassVar[list[Any]] = [IsAuthenticatedPrincipal]

    @property
    def actor(self) -> Actor:
        return request_actor(self.request)

    def accessible_organisations(self) -> list[Organisation]:
        return accessible_organisations(user=request_user(self.request), token=request_token(self.request))


class OrgScopedMixin:
    """Resolve `account_id` from the URL into `self.organisation` and `self.access`, then check the scope
    `<resource>:read` for safe methods and `<resource>:edit` otherwise (or `scope_map` per action or method).

    This runs in `initial()`, before DRF looks for a handler: a caller outside the organisation gets 404 for
    every method, even one the view does not implement."""

    resource: ClassVar[str]
    account_kwarg: ClassVar[str] = "account_id"
    # action or lower-case method -> (resource, level), for those whose need differs from the method's default;
    # None means membership of the organisation is enough (reading the account itself, verifying a token).
    scope_map: ClassVar[dict[str, tuple[str, str] | None]] = {}
    organisation: Organisation
    access: OrgAccess

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        self.access = self.resolve_access(request, **kwargs)
        self.organisation = self.access.organisation
        required = self.required_scope(request)
        if required is not None:
            self.access.require(*required)

    def resolve_access(self, request: Request, **kwargs: Any) -> OrgAccess:
        return resolve_org_access(
            user=request_user(request), token=request_token(request), account_id=kwargs.get(self.account_kwarg)
        )

    def required_scope(self, request: Request) -> tuple[str, str] | None:
        action = getattr(self, "action", None)
        if action and action in self.scope_map:
            return self.scope_map[action]
        method = (request.method or "").lower()
        if method in self.scope_map:
            return self.scope_map[method]
        return self.resource, (Level.READ if request.method in SAFE_METHODS else Level.EDIT)

    @property
    def actor(self) -> Actor:
        return request_actor(self.request)  # type: ignore[attr-defined]

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()  # type: ignore[misc]
        context["organisation"] = getattr(self, "organisation", None)
        return context


class OrgScopedAPIView(OrgScopedMixin, APIView):
    permission_classes: ClassVar[list[Any]] = [IsAuthenticatedPrincipal]

    def get_serializer_context(self) -> dict[str, Any]:
        return {"request": self.request, "view": self, "organisation": getattr(self, "organisation", None)}


def resolve_zone_access(request: Request, zone_id: Any) -> tuple[Zone, OrgAccess]:
    """The zone `zone_id` among the organisations the caller can act in (404 otherwise, whether it is missing or
    another tenant's), and the caller's access to the zone's organisation."""
    user, token = request_user(request), request_token(request)
    organisations = accessible_organisations(user=user, token=token)
    zone = zone_get(organisations=organisations, zone_id=zone_id)
    access = resolve_org_access(user=user, token=token, account_id=zone.organisation_id.hex)
    zone.organisation = access.organisation
    return zone, access


class ZoneScopedMixin(OrgScopedMixin):
    """For `/zones/{zone_id}…`, whose URL names no account: find the zone among the organisations the caller can
    act in (404 otherwise, whether it is missing or another tenant's), then resolve and check access to the zone's
    organisation exactly as `OrgScopedMixin` does. The zone is `self.zone`."""

    resource: ClassVar[str] = Resource.ZONES
    zone_kwarg: ClassVar[str] = "zone_id"
    zone: Zone

    def resolve_access(self, request: Request, **kwargs: Any) -> OrgAccess:
        self.zone, access = resolve_zone_access(request, kwargs.get(self.zone_kwarg))
        return access


class ZoneScopedAPIView(ZoneScopedMixin, APIView):
    permission_classes: ClassVar[list[Any]] = [IsAuthenticatedPrincipal]

    def get_serializer_context(self) -> dict[str, Any]:
        return {"request": self.request, "view": self, "organisation": getattr(self, "organisation", None)}
