"""Audit events, shaped like the SDK's `AuditLog`, with our structured `changes` beside newValue/oldValue."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from controlplane.api.serializers.common import DateOrDateTimeField, QueryParams, direction_field
from controlplane.choices import AuditAction
from controlplane.models import AuditEvent


class AuditActionSerializer(serializers.Serializer):
    type = serializers.CharField(source="action")
    result = serializers.SerializerMethodField(help_text="Always true: refused changes are not recorded.")

    def get_result(self, event: AuditEvent) -> bool:
        return True


class AuditActorSerializer(serializers.Serializer):
    id = serializers.SerializerMethodField(help_text="The user's id, or the API token's id.")
    email = serializers.CharField(source="actor_email")
    ip = serializers.CharField(allow_null=True)
    type = serializers.CharField(source="actor_type", help_text="user, token, system or connector.")

    def get_id(self, event: AuditEvent) -> str | None:
        if event.actor_token_id is not None:
            return event.actor_token_id.hex
        return str(event.actor_user_id) if event.actor_user_id is not None else None


class AuditMetadataSerializer(serializers.Serializer):
    user_agent = serializers.CharField()


class AuditOwnerSerializer(serializers.Serializer):
    id = serializers.CharField(source="organisation_id.hex")


class AuditResourceSerializer(serializers.Serializer):
    id = serializers.CharField(source="resource_id")
    type = serializers.CharField(source="resource_type")
    name = serializers.CharField(source="resource_name")


def _side(changes: dict[str, Any], index: int) -> str | None:
    if not changes:
        return None
    return json.dumps({field: values[index] for field, values in changes.items()}, sort_keys=True)


class AuditLogSerializer(serializers.Serializer):
    id = serializers.CharField(source="id.hex")
    action = AuditActionSerializer(source="*")
    actor = AuditActorSerializer(source="*")
    interface = serializers.CharField()
    metadata = AuditMetadataSerializer(source="*")
    owner = AuditOwnerSerializer(source="*")
    resource = AuditResourceSerializer(source="*")
    when = serializers.DateTimeField(source="created_at")
    changes = serializers.DictField(help_text="{field: [old, new]} for each changed field.")
    newValue = serializers.SerializerMethodField(help_text="The changed fields' new values, as JSON.")  # noqa: N815
    oldValue = serializers.SerializerMethodField(help_text="The changed fields' old values, as JSON.")  # noqa: N815

    @extend_schema_field(OpenApiTypes.STR)
    def get_newValue(self, event: AuditEvent) -> str | None:  # noqa: N802
        return _side(event.changes, 1)

    @extend_schema_field(OpenApiTypes.STR)
    def get_oldValue(self, event: AuditEvent) -> str | None:  # noqa: N802
        return _side(event.changes, 0)


_IPV4_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"


@extend_schema_field(
    {
        "type": "string",
        "anyOf": [
            {"format": "ipv4"},
            {"format": "ipv6"},
            {"pattern": rf"^({_IPV4_OCTET}\.){{3}}{_IPV4_OCTET}/(3[0-2]|[12]?[0-9])$"},
        ],
    }
)
class IpOrNetworkField(serializers.CharField):
    default_error_messages = {"invalid_ip": "Give an IP address or an IPv4 CIDR range."}

    def to_internal_value(self, data: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        text = super().to_internal_value(data)
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            self.fail("invalid_ip")
        if network.version == 6 and network.num_addresses != 1:
            self.fail("invalid_ip")
        return network


class AuditLogQuery(QueryParams):
    def params(self) -> dict[str, Any]:
        return {
            "id": serializers.UUIDField(required=False, source="event_id", help_text="One event's id."),
            "actor.email": serializers.CharField(required=False, source="actor_email"),
            "actor.ip": IpOrNetworkField(required=False, source="actor_ip", help_text="An IP or IPv4 CIDR range."),
            "action.type": serializers.ChoiceField(choices=AuditAction.values, required=False, source="action"),
            "resource.type": serializers.CharField(
                required=False, source="resource_type", help_text="e.g. zone, member, invitation, api_token."
            ),
            "zone.name": serializers.CharField(required=False, source="zone_name", help_text="Events of one zone."),
            "since": DateOrDateTimeField(required=False, help_text="Events at or after this date(-time)."),
            "before": DateOrDateTimeField(required=False, help_text="Events before this date(-time)."),
            "hide_user_logs": serializers.BooleanField(required=False, default=False),
            "export": serializers.BooleanField(required=False, help_text="Accepted and ignored."),
            "direction": direction_field("desc"),
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs.pop("export", None)
        if attrs.get("since") and attrs.get("before") and attrs["since"] >= attrs["before"]:
            raise serializers.ValidationError({"before": "must be after `since`."})
        return attrs
