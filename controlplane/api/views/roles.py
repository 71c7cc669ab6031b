"""The roles a member can be given (fixed: they are our `Role` choices)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.api.base import OrgScopedAPIView
from controlplane.api.pagination import V4Pagination, paginated_response
from controlplane.api.schema import errors
from controlplane.api.serializers.roles import RoleSerializer, all_roles, role_info
from controlplane.choices import Resource


class RoleListView(OrgScopedAPIView):
    resource = Resource.MEMBERS
    pagination_class = V4Pagination

    @extend_schema(summary="List roles", responses={200: RoleSerializer(many=True), **errors(400, 401, 403, 404)})
    def get(self, request: Request, account_id: str) -> Response:
        return paginated_response(request, all_roles(), RoleSerializer, view=self)


class RoleDetailView(OrgScopedAPIView):
    resource = Resource.MEMBERS

    @extend_schema(summary="Role details", responses={200: RoleSerializer, **errors(401, 403, 404)})
    def get(self, request: Request, account_id: str, role_id: str) -> Response:
        return Response(RoleSerializer(role_info(role_id)).data)
