"""/client/v4/zones/{zone_id}/dns_records — Cloudflare's DNS records API."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.api.base import ZoneScopedAPIView
from controlplane.api.pagination import V4Pagination, paginated_response
from controlplane.api.schema import errors
from controlplane.api.serializers.common import IdResultSerializer
from controlplane.api.serializers.dns import (
    DnsRecordListQuery,
    DnsRecordPatchSerializer,
    DnsRecordSerializer,
    DnsRecordWriteSerializer,
)
from controlplane.errors import NotFound
from controlplane.models import DnsRecord
from controlplane.services.dns import dns_record_create, dns_record_delete, dns_record_update

LOOKUPS = {"exact": "iexact", "contains": "icontains", "startswith": "istartswith", "endswith": "iendswith"}


class DnsRecordListView(ZoneScopedAPIView):
    pagination_class = V4Pagination

    @extend_schema(
        summary="List DNS records",
        parameters=[
            OpenApiParameter("type", str),
            OpenApiParameter("name", str, description="Exact name; also name.contains/startswith/endswith"),
            OpenApiParameter("content", str),
            OpenApiParameter("proxied", bool),
        ],
        responses={200: DnsRecordSerializer(many=True), **errors(400, 401, 403, 404)},
    )
    def get(self, request: Request, zone_id: str) -> Response:
        query = DnsRecordListQuery.parse(request)
        records = DnsRecord.objects.for_org(self.organisation).filter(zone=self.zone).select_related("zone")
        if query.get("type"):
            records = records.filter(type=query["type"].upper())
        if query.get("proxied") is not None:
            records = records.filter(proxied=query["proxied"])
        for key, value in query.items():
            field, _, op = key.partition("_")
            if field in ("name", "content") and op in LOOKUPS:
                records = records.filter(**{f"{field}__{LOOKUPS[op]}": value})
        return paginated_response(request, records.order_by("name", "type"), DnsRecordSerializer, view=self)

    @extend_schema(
        summary="Create a DNS record",
        description="A CNAME to `<tunnel id>.<tunnel domain>` routes the name to that tunnel (it must be one of "
        "this account's live tunnels).",
        request=DnsRecordWriteSerializer,
        responses={200: DnsRecordSerializer, **errors(400, 401, 403, 404)},
    )
    def post(self, request: Request, zone_id: str) -> Response:
        serializer = DnsRecordWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        record = dns_record_create(zone=self.zone, actor=self.actor, **serializer.validated_data)
        return Response(DnsRecordSerializer(record).data)


class DnsRecordDetailView(ZoneScopedAPIView):
    def record(self, record_id: str) -> DnsRecord:
        try:
            pk = uuid.UUID(hex=str(record_id))
        except ValueError:
            raise NotFound("No such DNS record.") from None
        record = (
            DnsRecord.objects.for_org(self.organisation).filter(zone=self.zone, pk=pk).select_related("zone").first()
        )
        if record is None:
            raise NotFound("No such DNS record.")
        return record

    @extend_schema(summary="DNS record details", responses={200: DnsRecordSerializer, **errors(401, 403, 404)})
    def get(self, request: Request, zone_id: str, record_id: str) -> Response:
        return Response(DnsRecordSerializer(self.record(record_id)).data)

    @extend_schema(
        summary="Replace a DNS record",
        request=DnsRecordWriteSerializer,
        responses={200: DnsRecordSerializer, **errors(400, 401, 403, 404)},
    )
    def put(self, request: Request, zone_id: str, record_id: str) -> Response:
        record = self.record(record_id)
        serializer = DnsRecordWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        record = dns_record_update(record=record, actor=self.actor, **serializer.validated_data)
        return Response(DnsRecordSerializer(record).data)

    @extend_schema(
        summary="Edit a DNS record",
        request=DnsRecordPatchSerializer,
        responses={200: DnsRecordSerializer, **errors(400, 401, 403, 404)},
    )
    def patch(self, request: Request, zone_id: str, record_id: str) -> Response:
        record = self.record(record_id)
        serializer = DnsRecordPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        record = dns_record_update(record=record, actor=self.actor, **serializer.validated_data)
        return Response(DnsRecordSerializer(record).data)

    @extend_schema(summary="Delete a DNS record", responses={200: IdResultSerializer, **errors(401, 403, 404)})
    def delete(self, request: Request, zone_id: str, record_id: str) -> Response:
        record = self.record(record_id)
        deleted_id = record.id.hex
        dns_record_delete(record=record, actor=self.actor)
        return Response({"id": deleted_id})
