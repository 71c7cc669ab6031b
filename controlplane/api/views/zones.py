"""Zones. Their URLs name no account: the list spans the caller's accounts, and a zone is found among them."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.access import resolve_org_access
from controlplane.api.base import PrincipalView, ZoneScopedAPIView, request_token, request_user
from controlplane.api.pagination import V4Pagination, paginated_response
from controlplane.api.schema import errors
from controlplane.api.serializers.common import IdResultSerializer
from controlplane.api.serializers.zones import ZoneCreateSerializer, ZoneEditSerializer, ZoneListQuery, ZoneSerializer
from controlplane.choices import Level, Resource, scope
from controlplane.errors import NotFound, PermissionDenied
from controlplane.models import Organisation
from controlplane.selectors import parse_hex_id, zone_list
from controlplane.services.zones import zone_check_verification, zone_create, zone_delete


class ZoneListView(PrincipalView):
    pagination_class = V4Pagination

    def readable_organisations(self) -> list[Organisation]:
        """Accounts whose zones the caller may see. A token without zone access is refused outright."""
        token = request_token(self.request)
        if token is not None:
            if scope(Resource.ZONES, Level.READ) not in token.scopes:
                raise PermissionDenied("This API token cannot see zones.")
            return [token.organisation]
        return self.accessible_organisations()  # every role reads zones

    @extend_schema(
        summary="List zones",
        description="Zones of every account the caller can act in, filtered and sorted as asked.",
        parameters=[ZoneListQuery],
        responses={200: ZoneSerializer(many=True), **errors(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        query = ZoneListQuery.parse(request)
        if "account_id" in query:
            try:
                query["account_id"] = parse_hex_id(query["account_id"], "account")
            except NotFound:
                return paginated_response(request, [], ZoneSerializer, view=self)
        zones = zone_list(organisations=self.readable_organisations(), **query)
        return paginated_response(request, zones, ZoneSerializer, view=self)

    @extend_schema(
        summary="Add a zone",
        description="The zone starts `pending`: publish the TXT record given in `verification`, then run the "
        "activation check.",
        request=ZoneCreateSerializer,
        responses={200: ZoneSerializer, **errors(400, 401, 403, 404)},
    )
    def post(self, request: Request) -> Response:
        serializer = ZoneCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        access = resolve_org_access(
            user=request_user(request),
            token=request_token(request),
            account_id=serializer.validated_data["account"]["id"],
        )
        access.require(Resource.ZONES, Level.EDIT)
        zone = zone_create(organisation=access.organisation, name=serializer.validated_data["name"], actor=self.actor)
        return Response(ZoneSerializer(zone).data)


class ZoneDetailView(ZoneScopedAPIView):
    @extend_schema(summary="Zone details", responses={200: ZoneSerializer, **errors(401, 403, 404)})
    def get(self, request: Request, zone_id: str) -> Response:
        return Response(ZoneSerializer(self.zone).data)

    @extend_schema(
        summary="Edit a zone",
        description="Accepted for the SDK's sake: nothing of a zone is editable (it cannot be paused, and it is "
        "always a full zone). Unsupported values are refused naming the field.",
        request=ZoneEditSerializer,
        responses={200: ZoneSerializer, **errors(400, 401, 403, 404)},
    )
    def patch(self, request: Request, zone_id: str) -> Response:
        ZoneEditSerializer(data=request.data).is_valid(raise_exception=True)
        return Response(ZoneSerializer(self.zone).data)

    @extend_schema(summary="Delete a zone", responses={200: IdResultSerializer, **errors(401, 403, 404)})
    def delete(self, request: Request, zone_id: str) -> Response:
        deleted_id = self.zone.id.hex  # deleting clears the instance's primary key
        zone_delete(zone=self.zone, actor=self.actor)
        return Response({"id": deleted_id})


class ZoneActivationCheckView(ZoneScopedAPIView):
    @extend_schema(
        summary="Check the zone's verification record now",
        description="Looks the TXT record up and activates the zone if it carries the value; the zone's "
        "`verification.last_error` says why not otherwise.",
        request=None,
        responses={200: IdResultSerializer, **errors(401, 403, 404)},
    )
    def put(self, request: Request, zone_id: str) -> Response:
        zone = zone_check_verification(zone=self.zone, actor=self.actor)
        return Response({"id": zone.id.hex})
