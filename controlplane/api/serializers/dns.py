"""DNS records, shaped as Cloudflare's v4 records."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from controlplane.api.pagination import V4Pagination
from controlplane.models import DnsRecord


class DnsRecordSerializer(serializers.Serializer):
    id = serializers.SerializerMethodField()
    zone_id = serializers.SerializerMethodField()
    zone_name = serializers.CharField(source="zone.name")
    type = serializers.CharField()
    name = serializers.CharField()
    content = serializers.CharField()
    proxied = serializers.BooleanField()
    proxiable = serializers.SerializerMethodField()
    ttl = serializers.IntegerField()
    comment = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    settings = serializers.SerializerMethodField()
    meta = serializers.SerializerMethodField()
    created_on = serializers.DateTimeField(source="created_at")
    modified_on = serializers.DateTimeField(source="updated_at")

    def get_id(self, obj: DnsRecord) -> str:
        return obj.id.hex

    def get_zone_id(self, obj: DnsRecord) -> str:
        return obj.zone_id.hex

    def get_proxiable(self, obj: DnsRecord) -> bool:
        return obj.type in ("A", "AAAA", "CNAME")

    def get_settings(self, obj: DnsRecord) -> dict[str, Any]:
        return {}

    def get_meta(self, obj: DnsRecord) -> dict[str, Any]:
        """`<kind>_id` names what manages the record, e.g. `tunnel_id`: the tunnel whose public hostname it routes."""
        return {f"{obj.managed_by}_id": str(obj.managed_by_id)} if obj.managed_by and obj.managed_by_id else {}


class DnsRecordWriteSerializer(serializers.Serializer):
    type = serializers.CharField(max_length=10)
    name = serializers.CharField(max_length=253, allow_blank=True)
    content = serializers.CharField(max_length=4096)
    ttl = serializers.IntegerField(required=False, default=1)
    proxied = serializers.BooleanField(required=False, default=False)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")
    tags = serializers.ListField(child=serializers.CharField(max_length=255), required=False, default=list)


class DnsRecordPatchSerializer(DnsRecordWriteSerializer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["partial"] = True
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False
            field.default = serializers.empty


class DnsRecordListQuery(serializers.Serializer):
    type = serializers.CharField(required=False, max_length=10)
    name = serializers.CharField(required=False, max_length=253)
    content = serializers.CharField(required=False, max_length=4096)
    proxied = serializers.BooleanField(required=False, allow_null=True, default=None)
    page = serializers.FloatField(required=False, min_value=1)
    per_page = serializers.FloatField(required=False, min_value=1, max_value=V4Pagination.max_per_page)

    @classmethod
    def parse(cls, request: Any) -> dict[str, Any]:
        params = {}
        for key, value in request.query_params.items():
            # The SDK sends name.exact / name.contains …; the bare name is an exact match.
            base, _, op = key.partition(".")
            if base in ("name", "content") and op in ("", "exact", "contains", "startswith", "endswith"):
                params[f"{base}_{op or 'exact'}"] = value
            elif base in cls().fields:
                params[base] = value
        query = cls(data={k: v for k, v in params.items() if k in cls().fields})
        query.is_valid(raise_exception=True)
        data = dict(query.validated_data)
        for key, value in params.items():
            if key.startswith(("name_", "content_")):
                if "\x00" in value or len(value) > 4096:
                    from rest_framework.exceptions import ValidationError

                    raise ValidationError({key.split("_")[0]: "Invalid value."})
                data[key] = value
        return data
