"""Organisations as v4 accounts."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.api.base import OrgScopedAPIView, PrincipalView
from controlplane.api.pagination import V4Pagination
from controlplane.api.serializers.accounts import AccountSerializer
from controlplane.choices import Resource
from controlplane.services.organisations import organisation_update


class AccountListView(PrincipalView):
    @extend_schema(responses=AccountSerializer(many=True), summary="List the accounts (organisations) you can act in")
    def get(self, request: Request) -> Response:
        organisations = sorted(self.accessible_organisations(), key=lambda org: (org.display_name, org.team_name))
        paginator = V4Pagination()
        page = paginator.paginate_queryset(organisations, request, view=self)
        return paginator.get_paginated_response(AccountSerializer(page, many=True).data)


class AccountDetailView(OrgScopedAPIView):
    resource = Resource.SETTINGS

    @extend_schema(responses=AccountSerializer, summary="Account details")
    def get(self, request: Request, account_id: str) -> Response:
        return Response(AccountSerializer(self.organisation).data)

    @extend_schema(request=AccountSerializer, responses=AccountSerializer, summary="Rename the account or team")
    def put(self, request: Request, account_id: str) -> Response:
        serializer = AccountSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = serializer.validated_data
        fields: dict[str, Any] = {}
        if "display_name" in data:
            fields["display_name"] = data["display_name"]
        if "team_name" in data:
            fields["team_name"] = data["team_name"]
        settings = request.data.get("settings") if isinstance(request.data, dict) else None
        if isinstance(settings, dict) and "enforce_twofactor" in settings:
            fields["require_2fa"] = bool(settings["enforce_twofactor"])
        organisation = organisation_update(organisation=self.organisation, actor=self.actor, **fields)
        return Response(AccountSerializer(organisation).data)
