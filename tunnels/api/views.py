"""/client/v4/accounts/{account_id}/cfd_tunnel… — Cloudflare's tunnel API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.api.base import OrgScopedAPIView
from controlplane.api.envelope import float_free
from controlplane.api.pagination import V4Pagination
from controlplane.api.serializers.common import validated_query
from controlplane.choices import Level, Resource
from tunnels import selectors, services
from tunnels.api.serializers import (
    ConfigurationInput,
    ConfigurationOutput,
    ConnectorOutput,
    HostnameInput,
    HostnameOutput,
    OriginErrorOutput,
    OriginErrorQuery,
    TunnelCreateInput,
    TunnelEditInput,
    TunnelListQuery,
    TunnelOutput,
    configuration_data,
    connector_data,
    hostnames_data,
    tunnel_data,
)
from tunnels.live import origin_error_json


def _bool(value: str | None, name: str) -> bool | None:
    if value in (None, ""):
        return None
    if value.lower() in {"true", "1"}:
        return True
    if value.lower() in {"false", "0"}:
        return False
    raise ValidationError({name: "must be true or false."})


class TunnelBase(OrgScopedAPIView):
    resource = Resource.TUNNELS

    def tunnel(self, tunnel_id: str, include_deleted: bool = False):
        return selectors.tunnel_get(
            organisation=self.organisation, tunnel_id=tunnel_id, include_deleted=include_deleted
        )

    def tunnel_response(self, tunnel) -> Response:
        return Response(tunnel_data(tunnel, selectors.tunnel_health(tunnel=tunnel)))


class TunnelListView(TunnelBase):
    pagination_class = V4Pagination

    @extend_schema(parameters=[TunnelListQuery], responses=TunnelOutput(many=True), summary="List tunnels")
    def get(self, request: Request, account_id: str) -> Response:
        params = validated_query(TunnelListQuery, request)
        paginator = V4Pagination()
        if not params.keys() - {"is_deleted", "page", "per_page"}:  # the common list: its queries compiled once
            pages = selectors.tunnel_list_pages(organisation=self.organisation, is_deleted=params["is_deleted"])
            page = paginator.paginate_queryset(pages, request, view=self)
            health = selectors.tunnel_health_map(organisation=self.organisation, tunnels=page)
            # tunnel_data holds no float: its JSON is orjson's (controlplane/api/envelope.py)
            return float_free(paginator.get_paginated_response([tunnel_data(t, health[t.id]) for t in page]))
        qs = selectors.tunnel_list(organisation=self.organisation, is_deleted=params["is_deleted"])
        if "name" in params:
            qs = qs.filter(name=params["name"])
        if "uuid" in params:
            qs = qs.filter(pk=params["uuid"])
        if "include_prefix" in params:
            qs = qs.filter(name__startswith=params["include_prefix"])
        if "exclude_prefix" in params:
            qs = qs.exclude(name__startswith=params["exclude_prefix"])
        if "existed_at" in params:
            qs = qs.filter(created_at__lte=params["existed_at"])
        if "was_active_at" in params:
            qs = qs.filter(conns_active_at__lte=params["was_active_at"])
        if "was_inactive_at" in params:
            qs = qs.filter(conns_inactive_at__lte=params["was_inactive_at"])
        if "status" in params:  # health is computed, not stored: filter every tunnel, then take the page
            tunnels = list(qs)
            health = selectors.tunnel_health_map(organisation=self.organisation, tunnels=tunnels)
            tunnels = [t for t in tunnels if health[t.pk].status == params["status"]]
            page = paginator.paginate_queryset(tunnels, request, view=self)
        else:  # the page alone is read and its health computed: the cost does not grow with the list
            page = paginator.paginate_queryset(qs, request, view=self)
            health = selectors.tunnel_health_map(organisation=self.organisation, tunnels=page)
        return float_free(paginator.get_paginated_response([tunnel_data(t, health[t.pk]) for t in page]))

    @extend_schema(request=TunnelCreateInput, responses=TunnelOutput, summary="Create a tunnel")
    def post(self, request: Request, account_id: str) -> Response:
        data = _valid(TunnelCreateInput, request.data)
        tunnel = services.tunnel_create(organisation=self.organisation, actor=self.actor, **data)
        response = Response(tunnel_data(tunnel, selectors.unconnected_tunnel_health(tunnel=tunnel)))
        response.data["token"] = services.tunnel_token(tunnel)
        return response


# A configuration body (docs/tunnels.md, "Limits"): the encoded configuration is capped at
# services.MAX_CONFIG_BYTES; this leaves room for whitespace and the envelope, and refuses more before parsing.
MAX_CONFIG_BODY_BYTES = 1024 * 1024


class PayloadTooLarge(APIException):
    status_code = 413
    default_code = "payload_too_large"


def _check_body_size(request: Request, limit: int) -> None:
    declared = request.META.get("CONTENT_LENGTH") or "0"
    size = int(declared) if declared.isdigit() else 0
    if size > limit or len(request.body) > limit:
        raise PayloadTooLarge(f"Request body larger than {limit} bytes (this endpoint's limit).")


def _valid(serializer_class: Any, data: Any) -> dict[str, Any]:
    return dict(_validated(serializer_class, data).validated_data)


class TunnelDetailView(TunnelBase):
    @extend_schema(responses=TunnelOutput, summary="Get a tunnel")
    def get(self, request: Request, account_id: str, tunnel_id: str) -> Response:
        return self.tunnel_response(self.tunnel(tunnel_id, include_deleted=True))

    @extend_schema(request=TunnelEditInput, responses=TunnelOutput, summary="Rename a tunnel or set its secret")
    def patch(self, request: Request, account_id: str, tunnel_id: str) -> Response:
        data = _valid(TunnelEditInput, request.data)
        tunnel = services.tunnel_update(tunnel=self.tunnel(tunnel_id), actor=self.actor, **data)
        return self.tunnel_response(tunnel)

    @extend_schema(
        parameters=[OpenApiParameter("cascade", bool, description="Disconnect live connectors and delete anyway.")],
        responses=TunnelOutput,
        summary="Delete a tunnel (refused while connectors are connected, unless cascade=true)",
    )
    def delete(self, request: Request, account_id: str, tunnel_id: str) -> Response:
        cascade = bool(_bool(request.query_params.get("cascade"), "cascade"))
        tunnel = services.tunnel_delete(tunnel=self.tunnel(tunnel_id), actor=self.actor, cascade=cascade)
        if not cascade:  # refused while a connector is connected, and a deleted tunnel accepts none: no health read
            return Response(tunnel_data(tunnel, selectors.unconnected_tunnel_health(tunnel=tunnel)))
        return self.tunnel_response(tunnel)


class TunnelTokenView(TunnelBase):
    # The token is a credential that takes over the tunnel's traffic: reading it needs what rotating it needs.
    scope_map = {"get": (Resource.TUNNELS, Level.EDIT)}

    @extend_schema(
        responses={200: OpenApiTypes.STR}, summary="Get the tunnel's token (treat as a secret; needs tunnels:edit)"
    )
    def get(self, request: Request, account_id: str, tunnel_id: str) -> Response:
        return Response(services.tunnel_token(self.tunnel(tunnel_id)))


class TunnelRotateView(TunnelBase):
    @extend_schema(
        request=None,
        parameters=[OpenApiParameter("disconnect", bool, description="Also close connections using the old token.")],
        responses={200: OpenApiTypes.STR},
        summary="Rotate the tunnel secret; returns the new token",
    )
    def post(self, request: Request, account_id: str, tunnel_id: str) -> Response:
        disconnect = bool(_bool(request.query_params.get("disconnect"), "disconnect"))
        tunnel = services.tunnel_rotate_secret(tunnel=self.tunnel(tunnel_id), actor=self.actor, disconnect=disconnect)
        return Response(services.tunnel_token(tunnel))


class TunnelConfigurationView(TunnelBase):
    @extend_schema(responses=ConfigurationOutput, summary="Get the remote-managed configuration")
    def get(self, request: Request, account_id: str, tunnel_id: str) -> Response:
        tunnel = self.tunnel(tunnel_id)
        return Response(configuration_data(tunnel, selectors.tunnel_configuration_date(tunnel=tunnel)))

    @extend_schema(
        request=ConfigurationInput,
        responses=ConfigurationOutput,
        summary=f"Replace the configuration (a body of at most {MAX_CONFIG_BODY_BYTES:,} bytes)",
    )
    def put(self, request: Request, account_id: str, tunnel_id: str) -> Response:
        _check_body_size(request, MAX_CONFIG_BODY_BYTES)
        data = _valid(ConfigurationInput, request.data)
        tunnel = self.tunnel(tunnel_id)
        saved = services.tunnel_config_update(tunnel=tunnel, config=data["config"], actor=self.actor)
        # The version this request saved, as the service wrote it (no re-read of the tunnel and its version).
        return Response(configuration_data(saved.tunnel, saved.created_at))


class TunnelConnectionsView(TunnelBase):
    @extend_schema(responses=ConnectorOutput(many=True), summary="List the tunnel's connectors and connections")
    def get(self, request: Request, account_id: str, tunnel_id: str) -> Response:
        tunnel = self.tunnel(tunnel_id, include_deleted=True)
        health = selectors.tunnel_health(tunnel=tunnel)
        return Response([connector_data(h, tunnel.config_version) for h in health.connectors])

    @extend_schema(
        parameters=[OpenApiParameter("client_id", str, description="Only this connector's connections.")],
        responses={200: OpenApiTypes.OBJECT},
        summary="Force-disconnect connections",
    )
    def delete(self, request: Request, account_id: str, tunnel_id: str) -> Response:
        tunnel = self.tunnel(tunnel_id, include_deleted=True)
        services.connections_disconnect(
            tunnel=tunnel, actor=self.actor, connector_id=request.query_params.get("client_id")
        )
        return Response({"id": str(tunnel.id)})


class TunnelConnectorView(TunnelBase):
    @extend_schema(responses=ConnectorOutput, summary="Get one connector")
    def get(self, request: Request, account_id: str, tunnel_id: str, connector_id: str) -> Response:
        tunnel = self.tunnel(tunnel_id, include_deleted=True)
        health = selectors.connector_health(tunnel=tunnel, connector_id=connector_id)
        return Response(connector_data(health, tunnel.config_version))


class TunnelOriginErrorsView(TunnelBase):
    """Ours (Cloudflare has no such list): the errors the edge answered for this tunnel, newest first, kept 7 days."""

    pagination_class = V4Pagination

    @extend_schema(
        parameters=[OriginErrorQuery],
        responses=OriginErrorOutput(many=True),
        summary="List the tunnel's recent origin errors (newest first; ?request_id= finds a visitor's)",
    )
    def get(self, request: Request, account_id: str, tunnel_id: str) -> Response:
        params = validated_query(OriginErrorQuery, request)
        tunnel = self.tunnel(tunnel_id, include_deleted=True)
        request_id = selectors.clean_request_id(params.get("request_id"))
        paginator = V4Pagination()
        page = paginator.paginate_queryset(
            selectors.origin_errors_recent(tunnel=tunnel, request_id=request_id), request, view=self
        )
        return paginator.get_paginated_response([origin_error_json(row) for row in page])


class TunnelHostnamesView(TunnelBase):
    """Public hostnames one at a time, so automation need not replace the whole configuration."""

    @extend_schema(responses=HostnameOutput(many=True), summary="List the tunnel's public hostnames")
    def get(self, request: Request, account_id: str, tunnel_id: str) -> Response:
        return Response(hostnames_data(self.tunnel(tunnel_id)))

    @extend_schema(
        request=HostnameInput,
        responses=HostnameOutput(many=True),
        summary="Add one public hostname (before the catch-all); creates its DNS record",
    )
    def post(self, request: Request, account_id: str, tunnel_id: str) -> Response:
        serializer = _validated(HostnameInput, request.data)
        tunnel = self.tunnel(tunnel_id)
        services.public_hostname_save(
            tunnel=tunnel,
            actor=self.actor,
            rule=serializer.rule(),
            expected_version=serializer.validated_data.get("version"),
        )
        tunnel.refresh_from_db()
        return Response(hostnames_data(tunnel))


class TunnelHostnameView(TunnelBase):
    def index(self, tunnel, index: str) -> int:
        from controlplane.errors import NotFound

        try:
            value = int(index)
        except ValueError:
            raise NotFound("No such public hostname.") from None
        if value not in {item["index"] for item in hostnames_data(tunnel)}:
            raise NotFound("No such public hostname.")
        return value

    @extend_schema(responses=HostnameOutput, summary="Get one public hostname")
    def get(self, request: Request, account_id: str, tunnel_id: str, index: str) -> Response:
        tunnel = self.tunnel(tunnel_id)
        position = self.index(tunnel, index)
        return Response(next(item for item in hostnames_data(tunnel) if item["index"] == position))

    @extend_schema(request=HostnameInput, responses=HostnameOutput(many=True), summary="Replace one public hostname")
    def put(self, request: Request, account_id: str, tunnel_id: str, index: str) -> Response:
        serializer = _validated(HostnameInput, request.data)
        tunnel = self.tunnel(tunnel_id)
        services.public_hostname_save(
            tunnel=tunnel,
            actor=self.actor,
            rule=serializer.rule(),
            index=self.index(tunnel, index),
            expected_version=serializer.validated_data.get("version"),
        )
        tunnel.refresh_from_db()
        return Response(hostnames_data(tunnel))

    @extend_schema(
        parameters=[OpenApiParameter("version", int, description="Refuse if the configuration changed since.")],
        responses=HostnameOutput(many=True),
        summary="Remove one public hostname and its DNS record",
    )
    def delete(self, request: Request, account_id: str, tunnel_id: str, index: str) -> Response:
        tunnel = self.tunnel(tunnel_id)
        raw_version = request.query_params.get("version")
        try:
            version = int(raw_version) if raw_version not in (None, "") else None
        except ValueError:
            raise ValidationError({"version": "must be a whole number."}) from None
        services.public_hostname_delete(
            tunnel=tunnel, actor=self.actor, index=self.index(tunnel, index), expected_version=version
        )
        tunnel.refresh_from_db()
        return Response(hostnames_data(tunnel))


def _validated(serializer_class: Any, data: Any) -> Any:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer
