"""/client/v4/accounts/{account_id}/access/… — Cloudflare's Access API (applications, policies, groups, service
tokens, identity providers) and /gateway/lists. Thin: parse, access check (the base class), service, shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from access import selectors
from access.api import serializers as s
from access.models import Application
from access.services import applications, directory, policies
from access.services import settings as settings_service
from controlplane.api.base import OrgScopedAPIView
from controlplane.api.pagination import V4Pagination
from controlplane.api.schema import errors
from controlplane.api.serializers.common import IdResultSerializer, validated_query
from controlplane.choices import Resource
from controlplane.models import Zone

READ_ERRORS = errors(400, 401, 403, 404)
WRITE_ERRORS = errors(400, 401, 403, 404)


def body(request: Request, serializer_class: Any = None) -> dict[str, Any]:
    """The JSON object sent, its outline (types, lengths, required fields) checked by the input serializer the schema
    shows; the services then check every value and name the bad entry."""
    if not isinstance(request.data, dict):
        raise ValidationError({"body": "A JSON object."})
    if serializer_class is not None:
        serializer_class(data=request.data).is_valid(raise_exception=True)
    return dict(request.data)


class AccessView(OrgScopedAPIView):
    resource = Resource.ACCESS
    input_serializer: ClassVar[Any] = None
    # Set by the `/zones/{zone_id}/access/…` variants (ZoneAccessMixin): applications are then those of the zone.
    zone: Zone | None = None

    def application_get(self, app_id: Any) -> Application:
        return selectors.application_get(organisation=self.organisation, app_id=app_id, zone=self.zone)

    def page(self, request: Request, items: Any, shape: Callable[[Any], dict[str, Any]]) -> Response:
        paginator = V4Pagination()
        chunk = paginator.paginate_queryset(items, request, view=self)
        return paginator.get_paginated_response([shape(item) for item in chunk])


class CollectionView(AccessView):
    """GET lists, POST creates. Subclasses name their selector, shape and service."""

    pagination_class = V4Pagination
    shape: ClassVar[Callable[[Any], dict[str, Any]]]

    def items(self, **kwargs: Any) -> models.QuerySet[Any]:
        raise NotImplementedError

    def create(self, data: dict[str, Any], **kwargs: Any) -> Any:
        raise NotImplementedError

    def get(self, request: Request, account_id: str, **kwargs: Any) -> Response:
        return self.page(request, self.items(**kwargs), type(self).shape)

    def post(self, request: Request, account_id: str, **kwargs: Any) -> Response:
        created = self.create(body(request, self.input_serializer), **kwargs)
        return Response(type(self).shape(created))


class ItemView(AccessView):
    """GET one, PUT replaces, DELETE removes ({id})."""

    shape: ClassVar[Callable[[Any], dict[str, Any]]]

    def item(self, **kwargs: Any) -> Any:
        raise NotImplementedError

    def replace(self, obj: Any, data: dict[str, Any], **kwargs: Any) -> Any:
        raise NotImplementedError

    def remove(self, obj: Any) -> None:
        raise NotImplementedError

    def get(self, request: Request, account_id: str, **kwargs: Any) -> Response:
        return Response(type(self).shape(self.item(**kwargs)))

    def put(self, request: Request, account_id: str, **kwargs: Any) -> Response:
        obj = self.item(**kwargs)
        return Response(type(self).shape(self.replace(obj, body(request, self.input_serializer), **kwargs)))

    def delete(self, request: Request, account_id: str, **kwargs: Any) -> Response:
        obj = self.item(**kwargs)
        pk = str(obj.pk)
        self.remove(obj)
        return Response({"id": pk})


def _crud_schema(noun: str, output: Any, input_: Any) -> tuple[Any, Any]:
    collection = extend_schema_view(
        get=extend_schema(summary=f"List {noun}s", responses={200: output(many=True), **READ_ERRORS}),
        post=extend_schema(summary=f"Create a {noun}", request=input_, responses={200: output, **WRITE_ERRORS}),
    )
    item = extend_schema_view(
        get=extend_schema(summary=f"Get a {noun}", responses={200: output, **READ_ERRORS}),
        put=extend_schema(summary=f"Replace a {noun}", request=input_, responses={200: output, **WRITE_ERRORS}),
        delete=extend_schema(summary=f"Delete a {noun}", responses={200: IdResultSerializer, **WRITE_ERRORS}),
    )
    return collection, item


# --- applications --------------------------------------------------------------------------------------------------

_app_list_schema, _app_item_schema = _crud_schema("self-hosted application", s.ApplicationOutput, s.ApplicationInput)


@_app_list_schema
class ApplicationListView(CollectionView):
    input_serializer = s.ApplicationInput
    shape = staticmethod(s.application_data)

    def items(self, **kwargs: Any) -> models.QuerySet[Any]:
        return selectors.application_list(organisation=self.organisation, zone=self.zone)

    def create(self, data: dict[str, Any], **kwargs: Any) -> Any:
        app = applications.application_save(organisation=self.organisation, actor=self.actor, data=data, zone=self.zone)
        return self.application_get(app.pk)


@_app_item_schema
class ApplicationDetailView(ItemView):
    input_serializer = s.ApplicationInput
    shape = staticmethod(s.application_data)

    def item(self, **kwargs: Any) -> Any:
        return self.application_get(kwargs["app_id"])

    def replace(self, obj: Any, data: dict[str, Any], **kwargs: Any) -> Any:
        applications.application_save(
            organisation=self.organisation, actor=self.actor, data=data, app=obj, zone=self.zone
        )
        return self.item(**kwargs)

    def remove(self, obj: Any) -> None:
        applications.application_delete(app=obj, actor=self.actor)


class ApplicationRevokeTokensView(AccessView):
    @extend_schema(
        summary="Revoke the application's session tokens",
        request=None,
        responses={200: IdResultSerializer, **WRITE_ERRORS},
    )
    def post(self, request: Request, account_id: str, app_id: str) -> Response:
        app = self.application_get(app_id)
        applications.application_revoke_tokens(app=app, actor=self.actor)
        return Response({"id": str(app.pk)})


# --- policies ------------------------------------------------------------------------------------------------------

_app_policy_list_schema, _app_policy_item_schema = _crud_schema("application policy", s.PolicyOutput, s.PolicyInput)
_policy_list_schema, _policy_item_schema = _crud_schema("reusable policy", s.PolicyOutput, s.PolicyInput)


def _reusable_policy_data(policy: Any) -> dict[str, Any]:
    return s.policy_data(policy)


@_app_policy_list_schema
class ApplicationPolicyListView(CollectionView):
    def shape(self, policy: Any) -> dict[str, Any]:  # type: ignore[override]
        return s.policy_data(policy, self.precedence.get(policy.pk))

    def application(self, app_id: str) -> Any:
        app = self.application_get(app_id)
        self.precedence = selectors.precedences(app)
        return app

    def get(self, request: Request, account_id: str, **kwargs: Any) -> Response:
        app = self.application(kwargs["app_id"])
        return self.page(request, selectors.policy_list(organisation=self.organisation, application=app), self.shape)

    def post(self, request: Request, account_id: str, **kwargs: Any) -> Response:
        app = self.application(kwargs["app_id"])
        policy = policies.policy_save(
            organisation=self.organisation, actor=self.actor, data=body(request, s.PolicyInput), application=app
        )
        self.precedence = selectors.precedences(app)
        return Response(self.shape(policy))


@_app_policy_item_schema
class ApplicationPolicyDetailView(AccessView):
    def _load(self, app_id: str, policy_id: str) -> tuple[Any, Any, dict[Any, int]]:
        app = self.application_get(app_id)
        policy = selectors.policy_get(organisation=self.organisation, policy_id=policy_id, application=app)
        return app, policy, selectors.precedences(app)

    def get(self, request: Request, account_id: str, app_id: str, policy_id: str) -> Response:
        _, policy, precedence = self._load(app_id, policy_id)
        return Response(s.policy_data(policy, precedence.get(policy.pk)))

    def put(self, request: Request, account_id: str, app_id: str, policy_id: str) -> Response:
        app, policy, _ = self._load(app_id, policy_id)
        policies.policy_save(
            organisation=self.organisation,
            actor=self.actor,
            data=body(request, s.PolicyInput),
            policy=policy,
            application=app,
        )
        _, policy, precedence = self._load(app_id, policy_id)
        return Response(s.policy_data(policy, precedence.get(policy.pk)))

    def delete(self, request: Request, account_id: str, app_id: str, policy_id: str) -> Response:
        app, policy, _ = self._load(app_id, policy_id)
        if policy.reusable:
            # Detaching a reusable policy from one application; the policy itself stays for the others.
            policies.detach_policy(application=app, policy=policy, actor=self.actor)
        else:
            policies.policy_delete(policy=policy, actor=self.actor)
        return Response({"id": policy_id})


@_policy_list_schema
class PolicyListView(CollectionView):
    input_serializer = s.PolicyInput
    shape = staticmethod(_reusable_policy_data)

    def items(self, **kwargs: Any) -> models.QuerySet[Any]:
        return selectors.policy_list(organisation=self.organisation)

    def create(self, data: dict[str, Any], **kwargs: Any) -> Any:
        policy = policies.policy_save(organisation=self.organisation, actor=self.actor, data=data)
        return selectors.policy_get(organisation=self.organisation, policy_id=policy.pk)


@_policy_item_schema
class PolicyDetailView(ItemView):
    input_serializer = s.PolicyInput
    shape = staticmethod(_reusable_policy_data)

    def item(self, **kwargs: Any) -> Any:
        return selectors.policy_get(organisation=self.organisation, policy_id=kwargs["policy_id"])

    def replace(self, obj: Any, data: dict[str, Any], **kwargs: Any) -> Any:
        policies.policy_save(organisation=self.organisation, actor=self.actor, data=data, policy=obj)
        return self.item(**kwargs)

    def remove(self, obj: Any) -> None:
        policies.policy_delete(policy=obj, actor=self.actor)


# --- groups, lists, identity providers, service tokens ---------------------------------------------------------------

_group_list_schema, _group_item_schema = _crud_schema("group", s.GroupOutput, s.GroupInput)
_list_list_schema, _list_item_schema = _crud_schema("list", s.ListOutput, s.ListInput)
_idp_list_schema, _idp_item_schema = _crud_schema(
    "identity provider", s.IdentityProviderOutput, s.IdentityProviderInput
)


@_group_list_schema
class GroupListView(CollectionView):
    input_serializer = s.GroupInput
    shape = staticmethod(s.group_data)

    def items(self, **kwargs: Any) -> models.QuerySet[Any]:
        return selectors.group_list(organisation=self.organisation)

    def create(self, data: dict[str, Any], **kwargs: Any) -> Any:
        return directory.group_save(organisation=self.organisation, actor=self.actor, data=data)


@_group_item_schema
class GroupDetailView(ItemView):
    input_serializer = s.GroupInput
    shape = staticmethod(s.group_data)

    def item(self, **kwargs: Any) -> Any:
        return selectors.group_get(organisation=self.organisation, group_id=kwargs["group_id"])

    def replace(self, obj: Any, data: dict[str, Any], **kwargs: Any) -> Any:
        return directory.group_save(organisation=self.organisation, actor=self.actor, data=data, group=obj)

    def remove(self, obj: Any) -> None:
        directory.group_delete(group=obj, actor=self.actor)


@_list_list_schema
class ListListView(CollectionView):
    input_serializer = s.ListInput
    shape = staticmethod(s.list_data)

    def items(self, **kwargs: Any) -> models.QuerySet[Any]:
        return selectors.list_list(organisation=self.organisation)

    def create(self, data: dict[str, Any], **kwargs: Any) -> Any:
        return directory.list_save(organisation=self.organisation, actor=self.actor, data=data)


@_list_item_schema
class ListDetailView(ItemView):
    input_serializer = s.ListInput
    shape = staticmethod(s.list_data)

    def item(self, **kwargs: Any) -> Any:
        return selectors.list_get(organisation=self.organisation, list_id=kwargs["list_id"])

    def replace(self, obj: Any, data: dict[str, Any], **kwargs: Any) -> Any:
        return directory.list_save(organisation=self.organisation, actor=self.actor, data=data, access_list=obj)

    def remove(self, obj: Any) -> None:
        directory.list_delete(access_list=obj, actor=self.actor)


@_idp_list_schema
class IdentityProviderListView(CollectionView):
    input_serializer = s.IdentityProviderInput
    shape = staticmethod(s.identity_provider_data)

    def items(self, **kwargs: Any) -> models.QuerySet[Any]:
        return selectors.identity_provider_list(organisation=self.organisation)

    def create(self, data: dict[str, Any], **kwargs: Any) -> Any:
        return directory.identity_provider_save(organisation=self.organisation, actor=self.actor, data=data)


@_idp_item_schema
class IdentityProviderDetailView(ItemView):
    input_serializer = s.IdentityProviderInput
    shape = staticmethod(s.identity_provider_data)

    def item(self, **kwargs: Any) -> Any:
        return selectors.identity_provider_get(organisation=self.organisation, idp_id=kwargs["idp_id"])

    def replace(self, obj: Any, data: dict[str, Any], **kwargs: Any) -> Any:
        return directory.identity_provider_save(organisation=self.organisation, actor=self.actor, data=data, idp=obj)

    def remove(self, obj: Any) -> None:
        directory.identity_provider_delete(idp=obj, actor=self.actor)


@extend_schema_view(
    get=extend_schema(summary="List service tokens", responses={200: s.ServiceTokenOutput(many=True), **READ_ERRORS}),
    post=extend_schema(
        summary="Create a service token (the client secret is returned once)",
        request=s.ServiceTokenInput,
        responses={200: s.ServiceTokenSecretOutput, **WRITE_ERRORS},
    ),
)
class ServiceTokenListView(CollectionView):
    shape = staticmethod(s.service_token_data)

    def items(self, **kwargs: Any) -> models.QuerySet[Any]:
        return selectors.service_token_list(organisation=self.organisation)

    def post(self, request: Request, account_id: str, **kwargs: Any) -> Response:
        token, secret = directory.service_token_create(
            organisation=self.organisation, actor=self.actor, data=body(request, s.ServiceTokenInput)
        )
        return Response(s.service_token_data(token, secret))


@extend_schema_view(
    get=extend_schema(summary="Get a service token", responses={200: s.ServiceTokenOutput, **READ_ERRORS}),
    put=extend_schema(
        summary="Update a service token",
        request=s.ServiceTokenInput,
        responses={200: s.ServiceTokenOutput, **WRITE_ERRORS},
    ),
    delete=extend_schema(summary="Delete a service token", responses={200: s.ServiceTokenOutput, **WRITE_ERRORS}),
)
class ServiceTokenDetailView(ItemView):
    input_serializer = s.ServiceTokenInput
    shape = staticmethod(s.service_token_data)

    def item(self, **kwargs: Any) -> Any:
        return selectors.service_token_get(organisation=self.organisation, token_id=kwargs["service_token_id"])

    def replace(self, obj: Any, data: dict[str, Any], **kwargs: Any) -> Any:
        return directory.service_token_update(token=obj, actor=self.actor, data=data)

    def delete(self, request: Request, account_id: str, **kwargs: Any) -> Response:
        token = self.item(**kwargs)
        data = s.service_token_data(token)
        directory.service_token_delete(token=token, actor=self.actor)
        return Response(data)


class ServiceTokenRefreshView(AccessView):
    @extend_schema(
        summary="Extend a service token's life by its duration", request=None, responses={200: s.ServiceTokenOutput}
    )
    def post(self, request: Request, account_id: str, service_token_id: str) -> Response:
        token = selectors.service_token_get(organisation=self.organisation, token_id=service_token_id)
        return Response(s.service_token_data(directory.service_token_refresh(token=token, actor=self.actor)))


class ServiceTokenRotateView(AccessView):
    @extend_schema(
        summary="Rotate a service token's client secret (returned once)",
        request=None,
        responses={200: s.ServiceTokenSecretOutput},
    )
    def post(self, request: Request, account_id: str, service_token_id: str) -> Response:
        token = selectors.service_token_get(organisation=self.organisation, token_id=service_token_id)
        token, secret = directory.service_token_rotate(token=token, actor=self.actor)
        return Response(s.service_token_data(token, secret))


# --- organisation settings, keys, users, logs, policy tester -------------------------------------------------------


class OrganizationView(AccessView):
    @extend_schema(
        summary="Get the Access settings of the account (a single object)", responses={200: s.AccessOrganizationOutput}
    )
    def get(self, request: Request, account_id: str) -> Response:
        return Response(
            s.access_organization_data(self.organisation, settings_service.access_settings(self.organisation))
        )

    @extend_schema(
        summary="Update the Access settings",
        request=s.AccessOrganizationInput,
        responses={200: s.AccessOrganizationOutput, **WRITE_ERRORS},
    )
    def put(self, request: Request, account_id: str) -> Response:
        row = settings_service.access_settings_update(
            organisation=self.organisation, actor=self.actor, data=body(request, s.AccessOrganizationInput)
        )
        return Response(s.access_organization_data(self.organisation, row))

    @extend_schema(
        summary="Create the Access settings (they exist already: same as update)",
        request=s.AccessOrganizationInput,
        responses={200: s.AccessOrganizationOutput, **WRITE_ERRORS},
    )
    def post(self, request: Request, account_id: str) -> Response:
        return self.put(request, account_id)


class RevokeUserView(AccessView):
    @extend_schema(
        summary="Revoke every session of one user",
        request=s.RevokeUserInput,
        responses={200: OpenApiTypes.BOOL, **WRITE_ERRORS},
    )
    def post(self, request: Request, account_id: str) -> Response:
        settings_service.user_revoke(
            organisation=self.organisation, actor=self.actor, email=body(request, s.RevokeUserInput).get("email")
        )
        return Response(True)


class KeysView(AccessView):
    @extend_schema(summary="Signing key rotation settings", responses={200: s.KeysOutput})
    def get(self, request: Request, account_id: str) -> Response:
        return Response(settings_service.keys_status(self.organisation))

    @extend_schema(
        summary="Set the rotation interval", request=s.KeysInput, responses={200: s.KeysOutput, **WRITE_ERRORS}
    )
    def put(self, request: Request, account_id: str) -> Response:
        settings_service.keys_update(
            organisation=self.organisation,
            actor=self.actor,
            days=body(request, s.KeysInput).get("key_rotation_interval_days"),
        )
        return Response(settings_service.keys_status(self.organisation))


class KeysRotateView(AccessView):
    @extend_schema(
        summary="Rotate the signing key now (the previous one verifies 7 more days)",
        request=None,
        responses={200: s.KeysOutput, **WRITE_ERRORS},
    )
    def post(self, request: Request, account_id: str) -> Response:
        settings_service.keys_rotate(organisation=self.organisation, actor=self.actor)
        return Response(settings_service.keys_status(self.organisation))


class AccessRequestLogView(AccessView):
    pagination_class = V4Pagination

    @extend_schema(
        summary="Access login attempts and decisions",
        parameters=[s.AccessLogQuery],
        responses={200: s.AccessRequestOutput(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, account_id: str) -> Response:
        rows = selectors.access_request_list(
            organisation=self.organisation, **validated_query(s.AccessLogQuery, request)
        )
        return self.page(request, rows, s.access_request_data)


class PolicyTesterView(AccessView):
    @extend_schema(
        summary="Which application admits this visitor, and why (a read: nothing is saved)",
        parameters=[s.PolicyTestInput],
        responses={200: s.PolicyTestOutput(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, account_id: str) -> Response:
        data = validated_query(s.PolicyTestInput, request)
        return Response(selectors.policy_test(organisation=self.organisation, data=data))
