"""Zones, shaped like the SDK's `Zone`, plus our `verification` (the TXT record that proves ownership)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from controlplane.api.serializers.common import (
    FilterOperatorField,
    ListOrCommaField,
    QueryParams,
    StrictBooleanField,
    direction_field,
    documented,
)
from controlplane.choices import ZoneStatus
from controlplane.models import Zone
from controlplane.selectors import ZONE_ORDERS

ZONE_TYPES = ["full", "partial", "secondary", "internal"]


class ZoneAccountSerializer(serializers.Serializer):
    id = serializers.CharField(source="organisation.account_id")
    name = serializers.CharField(source="organisation.display_name")


class ZoneVerificationSerializer(serializers.Serializer):
    """Publish this TXT record, then call `PUT /zones/{zone_id}/activation_check`."""

    type = serializers.SerializerMethodField()
    name = serializers.CharField(source="verification_record_name")
    value = serializers.CharField(source="verification_record_value")
    last_checked_on = serializers.DateTimeField(source="last_checked_at", allow_null=True)
    last_error = serializers.CharField(source="last_check_error", allow_blank=True)

    def get_type(self, zone: Zone) -> str:
        return "txt"


class ZoneOwnerSerializer(serializers.Serializer):
    id = serializers.CharField(source="organisation.account_id")
    name = serializers.CharField(source="organisation.display_name")
    type = serializers.SerializerMethodField()

    def get_type(self, zone: Zone) -> str:
        return "organization"


class ZoneSerializer(serializers.Serializer):
    id = serializers.CharField(source="id.hex")
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=ZoneStatus.values)
    account = ZoneAccountSerializer(source="*")
    owner = ZoneOwnerSerializer(source="*")
    created_on = serializers.DateTimeField(source="created_at")
    modified_on = serializers.DateTimeField(source="updated_at")
    activated_on = serializers.DateTimeField(source="verified_at", allow_null=True)
    name_servers = serializers.SerializerMethodField()
    original_name_servers = serializers.SerializerMethodField()
    original_registrar = serializers.SerializerMethodField()
    original_dnshost = serializers.SerializerMethodField()
    plan = serializers.SerializerMethodField()
    meta = serializers.SerializerMethodField()
    paused = serializers.SerializerMethodField()
    type = serializers.SerializerMethodField()
    development_mode = serializers.SerializerMethodField()
    verification_key = serializers.CharField(source="verification_record_value")
    verification = ZoneVerificationSerializer(source="*")

    # Fields of Cloudflare's zone that mean nothing here keep their neutral values, so clients parse them.
    def get_name_servers(self, zone: Zone) -> list[str]:
        return []

    def get_original_name_servers(self, zone: Zone) -> list[str] | None:
        return None

    def get_original_registrar(self, zone: Zone) -> str | None:
        return None

    def get_original_dnshost(self, zone: Zone) -> str | None:
        return None

    def get_plan(self, zone: Zone) -> dict[str, Any]:
        return {}

    def get_meta(self, zone: Zone) -> dict[str, Any]:
        return {}

    def get_paused(self, zone: Zone) -> bool:
        return False

    def get_type(self, zone: Zone) -> str:
        return "full"

    def get_development_mode(self, zone: Zone) -> int:
        return 0


class AccountReferenceSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The account (organisation) the zone is added to.")


class ZoneCreateSerializer(serializers.Serializer):
    account = AccountReferenceSerializer()
    name = serializers.CharField(max_length=253, help_text="The domain, e.g. `example.com`.")
    type = documented(
        serializers.ChoiceField(choices=ZONE_TYPES, required=False, default="full"),
        {"type": "string", "enum": ["full"]},
    )

    def validate_type(self, value: str) -> str:
        if value != "full":
            raise serializers.ValidationError("Only full zones are supported.")
        return value


class ZoneEditSerializer(serializers.Serializer):
    """Nothing of a zone is editable here; the SDK's fields are accepted with their only supported value."""

    paused = documented(
        StrictBooleanField(required=False, help_text="Only `false`: zones cannot be paused."),
        {"type": "boolean", "enum": [False]},
    )
    type = documented(
        serializers.ChoiceField(choices=ZONE_TYPES, required=False, help_text="Only `full`."),
        {"type": "string", "enum": ["full"]},
    )
    vanity_name_servers = documented(
        serializers.ListField(child=serializers.CharField(), required=False, help_text="Only an empty list."),
        {"type": "array", "items": {"type": "string"}, "maxItems": 0},
    )

    def validate_paused(self, value: bool) -> bool:
        if value:
            raise serializers.ValidationError("Zones cannot be paused.")
        return value

    def validate_type(self, value: str) -> str:
        if value != "full":
            raise serializers.ValidationError("Only full zones are supported.")
        return value

    def validate_vanity_name_servers(self, value: list[str]) -> list[str]:
        if value:
            raise serializers.ValidationError("Vanity name servers are not supported.")
        return value


class ZoneListQuery(QueryParams):
    def params(self) -> dict[str, Any]:
        return {
            "name": FilterOperatorField(required=False, help_text="Zone name (e.g. `contains:example`)."),
            "status": serializers.ChoiceField(choices=["initializing", "pending", "active", "moved"], required=False),
            "account.id": serializers.CharField(required=False, source="account_id"),
            "account.name": FilterOperatorField(required=False, source="account_name"),
            "type": ListOrCommaField(child=serializers.ChoiceField(choices=ZONE_TYPES), required=False, source="types"),
            "match": serializers.ChoiceField(choices=["any", "all"], required=False, default="all"),
            "order": serializers.ChoiceField(choices=list(ZONE_ORDERS), required=False, default="name"),
            "direction": direction_field("asc"),
        }
