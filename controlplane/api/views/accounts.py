"""Organisations as v4 accounts."""

from __future__ import annotations

from typing import Any, ClassVar

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.api.base import OrgScopedAPIView, PrincipalView
from controlplane.api.pagination import V4Pagination, paginated_response
from controlplane.api.schema import errors
from controlplane.api.serializers.accounts import (
    AccountListQuery,
    AccountSerializer,
    AccountUpdateSerializer,
    account_data,
)
from controlplane.choices import Resource
from controlplane.services.organisations import organisation_update


class AccountListView(PrincipalView):
    pagination_class = V4Pagination

    @extend_schema(
        summary="List the accounts (organisations) you can act in",
        description="A token sees its own account; a signed-in user every organisation they are a member of.",
        parameters=[AccountListQuery],
        responses={200: AccountSerializer(many=True), **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        query = AccountListQuery.parse(request)
        organisations = sorted(
            self.accessible_organisations(),
            key=lambda org: (org.display_name.lower(), org.team_name),
            reverse=query["direction"] == "desc",
        )
        if query.get("name"):
            organisations = [org for org in organisations if query["name"].lower() in org.display_name.lower()]
        return paginated_response(request, organisations, AccountSerializer, view=self)


class AccountDetailView(OrgScopedAPIView):
    resource = Resource.SETTINGS
    # Every member and token of the account may read it (the list shows the same); changing it needs settings.
    scope_map: ClassVar[dict[str, tuple[str, str] | None]] = {"get": None}

    @extend_schema(summary="Account details", responses={200: AccountSerializer, **errors(401, 404)})
    def get(self, request: Request, account_id: str) -> Response:
        return Response(account_data(self.organisation))

    @extend_schema(
        summary="Rename the account or team, or require two-factor sign-in",
        request=AccountUpdateSerializer,
        responses={200: AccountSerializer, **errors(400, 401, 403, 404)},
    )
    def put(self, request: Request, account_id: str) -> Response:
        serializer = AccountUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields: dict[str, Any] = serializer.validated_data
        organisation = organisation_update(organisation=self.organisation, actor=self.actor, **fields)
        return Response(account_data(organisation))
