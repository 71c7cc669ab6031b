"""Account API tokens. Tokens are never granted `tokens`, so they are managed by signed-in members (session);
verifying works with the bearer token alone."""

from __future__ import annotations

from typing import Any, ClassVar

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import ValidationError as InvalidRequest
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.api.base import OrgScopedAPIView, PrincipalView, request_token
from controlplane.api.envelope import fields_as_sent
from controlplane.api.pagination import V4Pagination, paginated_response
from controlplane.api.schema import errors
from controlplane.api.serializers.common import IdResultSerializer, validated_query
from controlplane.api.serializers.tokens import (
    PermissionGroupQuery,
    PermissionGroupSerializer,
    TokenCreatedSerializer,
    TokenListQuery,
    TokenSerializer,
    TokenUpdateSerializer,
    TokenVerifySerializer,
    TokenWriteSerializer,
    permission_groups,
)
from controlplane.choices import Resource
from controlplane.models import ApiToken
from controlplane.selectors import api_token_get, api_token_list
from controlplane.services.tokens import api_token_create, api_token_revoke, api_token_update


def as_sent(body: Any) -> dict[str, tuple[str, ...]]:
    """Where the caller put what the token service calls `permissions` and `allowed_networks`."""
    paths = {"allowed_networks": ("condition", "request_ip", "in")}
    if isinstance(body, dict) and "policies" in body:
        paths["permissions"] = ("policies",)
    return paths


class TokenListView(OrgScopedAPIView):
    resource = Resource.TOKENS
    pagination_class = V4Pagination

    @extend_schema(
        summary="List API tokens",
        description="Revoked tokens show as `disabled`; expired ones only with `include_expired=true`.",
        parameters=[TokenListQuery],
        responses={200: TokenSerializer(many=True), **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, account_id: str) -> Response:
        tokens = api_token_list(organisation=self.organisation, **TokenListQuery.parse(request))
        return paginated_response(request, tokens, TokenSerializer, view=self)

    @extend_schema(
        summary="Create an API token",
        description="The secret is returned once, as `value`. Grants are capped to the creator's role.",
        request=TokenWriteSerializer,
        responses={200: TokenCreatedSerializer, **errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, account_id: str) -> Response:
        serializer = TokenWriteSerializer(data=request.data, context={"organisation": self.organisation})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with fields_as_sent(as_sent(request.data)):
            token, raw = api_token_create(
                organisation=self.organisation,
                name=data["name"],
                grants=data["grants"],
                allowed_networks=data.get("allowed_networks"),
                expires_at=data.get("expires_on"),
                not_before=data.get("not_before"),
                actor=self.actor,
            )
        token = api_token_get(organisation=self.organisation, token_id=token.id)
        token.value = raw  # type: ignore[attr-defined]
        return Response(TokenCreatedSerializer(token).data)


class TokenDetailView(OrgScopedAPIView):
    resource = Resource.TOKENS

    def token(self, token_id: str) -> ApiToken:
        return api_token_get(organisation=self.organisation, token_id=token_id)

    @extend_schema(summary="API token details", responses={200: TokenSerializer, **errors(401, 403, 404)})
    def get(self, request: Request, account_id: str, token_id: str) -> Response:
        return Response(TokenSerializer(self.token(token_id)).data)

    @extend_schema(
        summary="Update an API token",
        description="Tokens are immutable apart from their status: send the token's current name, policies and "
        "condition with `status: disabled` to revoke it. Any other change is refused naming the field.",
        request=TokenUpdateSerializer,
        responses={200: TokenSerializer, **errors(400, 401, 403, 404)},
    )
    def put(self, request: Request, account_id: str, token_id: str) -> Response:
        token = self.token(token_id)
        serializer = TokenUpdateSerializer(data=request.data, context={"organisation": self.organisation})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        status = data.get("status")
        if status is not None and status not in (token.status, "disabled"):
            raise InvalidRequest({"status": f"The token is {token.status}; it can only be disabled (revoked)."})
        changes: dict[str, Any] = {"name": data["name"]}
        for field, argument in (
            ("grants", "grants"),
            ("allowed_networks", "allowed_networks"),
            ("expires_on", "expires_at"),
            ("not_before", "not_before"),
        ):
            if field in data:
                changes[argument] = data[field]
        with fields_as_sent(as_sent(request.data)):
            if token.revoked_at is None:
                token = api_token_update(token=token, actor=self.actor, **changes)
            if status == "disabled":
                token = api_token_revoke(token=token, actor=self.actor)
        return Response(TokenSerializer(self.token(token_id)).data)

    @extend_schema(
        summary="Revoke an API token",
        description="The token stops working at once; it stays listed as `disabled`.",
        responses={200: IdResultSerializer, **errors(401, 403, 404)},
    )
    def delete(self, request: Request, account_id: str, token_id: str) -> Response:
        token = api_token_revoke(token=self.token(token_id), actor=self.actor)
        return Response({"id": token.id.hex})


class PermissionGroupListView(OrgScopedAPIView):
    resource = Resource.TOKENS
    # Listing what can be granted reveals nothing of the account: any member or token may read it.
    scope_map: ClassVar[dict[str, tuple[str, str] | None]] = {"get": None}
    pagination_class = V4Pagination

    @extend_schema(
        summary="List the permission groups a token can be granted",
        description="Each group is `<resource>.<read|edit>`; use them in a token's `policies`.",
        parameters=[PermissionGroupQuery],
        responses={200: PermissionGroupSerializer(many=True), **errors(401, 404)},
    )
    def get(self, request: Request, account_id: str) -> Response:
        query = validated_query(PermissionGroupQuery, request)
        name = query.get("name", "").lower()
        scope = query.get("scope")
        groups = [
            group
            for group in permission_groups()
            if name in group.name.lower() and (scope is None or scope in group.scopes)
        ]
        return paginated_response(request, groups, PermissionGroupSerializer, view=self)


def _verify(request: Request) -> Response:
    token = request_token(request)
    if token is None:
        raise InvalidRequest({"authorization": "Send the API token to verify as `Authorization: Bearer <token>`."})
    return Response(TokenVerifySerializer(token).data)


VERIFY_DESCRIPTION = (
    "Whether the bearer token works. An invalid, expired or revoked token is answered 401 (it cannot authenticate)."
)


class AccountTokenVerifyView(OrgScopedAPIView):
    resource = Resource.TOKENS
    scope_map: ClassVar[dict[str, tuple[str, str] | None]] = {"get": None}

    @extend_schema(
        summary="Verify an account API token",
        description=VERIFY_DESCRIPTION,
        responses={200: TokenVerifySerializer, **errors(400, 401, 404)},
    )
    def get(self, request: Request, account_id: str) -> Response:
        return _verify(request)


class UserTokenVerifyView(PrincipalView):
    @extend_schema(
        summary="Verify an API token",
        description=VERIFY_DESCRIPTION,
        responses={200: TokenVerifySerializer, **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        return _verify(request)
