"""Account members: accepted memberships and pending invitations, as Cloudflare shows pending members."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.api.base import OrgScopedAPIView
from controlplane.api.envelope import fields_as_sent
from controlplane.api.pagination import V4Pagination, paginated_response
from controlplane.api.schema import errors
from controlplane.api.serializers.common import IdResultSerializer
from controlplane.api.serializers.members import (
    MemberCreateSerializer,
    MemberListQuery,
    MemberSerializer,
    MemberUpdateSerializer,
)
from controlplane.choices import Resource
from controlplane.errors import ValidationError
from controlplane.selectors import MemberEntry, member_get, member_list
from controlplane.services.members import (
    invitation_create,
    invitation_revoke,
    membership_remove,
    membership_update_role,
)


class MemberListView(OrgScopedAPIView):
    resource = Resource.MEMBERS
    pagination_class = V4Pagination

    @extend_schema(
        summary="List members and pending invitations",
        parameters=[MemberListQuery],
        responses={200: MemberSerializer(many=True), **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, account_id: str) -> Response:
        query = MemberListQuery.parse(request)
        entries = member_list(organisation=self.organisation, **query)
        return paginated_response(request, entries, MemberSerializer, view=self)

    @extend_schema(
        summary="Invite a member",
        description="Emails an invitation; the member shows as `pending` until it is accepted.",
        request=MemberCreateSerializer,
        responses={200: MemberSerializer, **errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, account_id: str) -> Response:
        serializer = MemberCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with fields_as_sent({"role": ("roles",)}):
            invitation, _ = invitation_create(
                organisation=self.organisation,
                email=serializer.validated_data["email"],
                role=serializer.validated_data["role"],
                actor=self.actor,
            )
        return Response(MemberSerializer(MemberEntry(invitation=invitation)).data)


class MemberDetailView(OrgScopedAPIView):
    resource = Resource.MEMBERS

    def entry(self, member_id: str) -> MemberEntry:
        return member_get(organisation=self.organisation, member_id=member_id)

    @extend_schema(summary="Member details", responses={200: MemberSerializer, **errors(401, 403, 404)})
    def get(self, request: Request, account_id: str, member_id: str) -> Response:
        return Response(MemberSerializer(self.entry(member_id)).data)

    @extend_schema(
        summary="Change a member's role",
        request=MemberUpdateSerializer,
        responses={200: MemberSerializer, **errors(400, 401, 403, 404)},
    )
    def put(self, request: Request, account_id: str, member_id: str) -> Response:
        entry = self.entry(member_id)
        serializer = MemberUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        role = serializer.validated_data["role"]
        if entry.membership is None:
            if role != entry.role:
                raise ValidationError(
                    {"roles": "A pending invitation's role cannot be changed: revoke it and invite again."}
                )
            return Response(MemberSerializer(entry).data)
        with fields_as_sent({"role": ("roles",)}):
            membership_update_role(membership=entry.membership, role=role, actor=self.actor)
        return Response(MemberSerializer(self.entry(member_id)).data)

    @extend_schema(
        summary="Remove a member, or revoke a pending invitation",
        responses={200: IdResultSerializer, **errors(400, 401, 403, 404)},
    )
    def delete(self, request: Request, account_id: str, member_id: str) -> Response:
        entry = self.entry(member_id)
        deleted_id = entry.id  # read before deleting clears the primary key
        if entry.membership is not None:
            membership_remove(membership=entry.membership, actor=self.actor)
        else:
            invitation_revoke(invitation=entry.invitation, actor=self.actor)  # type: ignore[arg-type]
        return Response({"id": deleted_id})
