"""API tokens, shaped like the SDK's `Token`. Grants can be given in our simple form
(`permissions: {"tunnels": "edit"}`) or as the SDK's policies, whose permission groups are `<resource>.<level>`."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from controlplane.api.serializers.common import QueryParams, direction_field
from controlplane.choices import TOKEN_RESOURCES, Level
from controlplane.models import ApiToken

ACCOUNT_RESOURCE_PREFIX = "com.cloudflare.api.account."


@dataclass(frozen=True)
class PermissionGroup:
    id: str
    name: str
    description: str
    resource: str
    level: str
    scopes: tuple[str, ...] = ("com.cloudflare.api.account",)


def permission_groups() -> list[PermissionGroup]:
    """What tokens can be granted: read or edit on each of TOKEN_RESOURCES."""
    groups = []
    for resource in TOKEN_RESOURCES:
        for level in Level:
            verb = "See" if level == Level.READ else "See and change"
            groups.append(
                PermissionGroup(
                    id=f"{resource.value}.{level.value}",
                    name=f"{resource.label} {level.label}",
                    description=f"{verb} {resource.label.lower()}.",
                    resource=resource.value,
                    level=level.value,
                )
            )
    return groups


PERMISSION_GROUPS = {group.id: group for group in permission_groups()}


def grants_to_groups(grants: dict[str, str]) -> list[PermissionGroup]:
    return [PERMISSION_GROUPS[f"{resource}.{level}"] for resource, level in sorted(grants.items())]


class PermissionGroupSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="`<resource>.<read|edit>`, e.g. `tunnels.edit`.")
    name = serializers.CharField()
    description = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())


class TokenListQuery(QueryParams):
    def params(self) -> dict[str, Any]:
        return {
            "include_expired": serializers.BooleanField(required=False, default=False),
            "direction": direction_field("desc"),
        }


class PermissionGroupQuery(serializers.Serializer):
    name = serializers.CharField(required=False, help_text="Part of the group's name.")
    scope = serializers.CharField(required=False, help_text="e.g. `com.cloudflare.api.account`.")


class PolicyPermissionGroupSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()


class TokenPolicySerializer(serializers.Serializer):
    id = serializers.CharField()
    effect = serializers.CharField()
    permission_groups = PolicyPermissionGroupSerializer(many=True)
    resources = serializers.DictField(child=serializers.CharField())


class RequestIpSerializer(serializers.Serializer):
    def get_fields(self) -> dict[str, Any]:
        # `in` is a Python keyword, hence the fields are declared here.
        return {
            "in": serializers.ListField(child=serializers.CharField(), help_text="Allowed client CIDRs."),
            "not_in": serializers.ListField(child=serializers.CharField()),
        }

    def to_representation(self, token: ApiToken) -> dict[str, Any]:
        return {"in": list(token.allowed_networks), "not_in": []}


class TokenConditionSerializer(serializers.Serializer):
    request_ip = RequestIpSerializer(source="*")


class TokenSerializer(serializers.Serializer):
    id = serializers.CharField(source="id.hex")
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["active", "disabled", "expired"])
    issued_on = serializers.DateTimeField(source="created_at")
    modified_on = serializers.DateTimeField(source="updated_at")
    last_used_on = serializers.DateTimeField(source="last_used_at", allow_null=True)
    expires_on = serializers.DateTimeField(source="expires_at", allow_null=True)
    not_before = serializers.DateTimeField(allow_null=True)
    permissions = serializers.DictField(source="grants", help_text='Our simple form: {"tunnels": "edit", …}.')
    policies = serializers.SerializerMethodField()
    condition = serializers.SerializerMethodField()
    creator_email_at_creation = serializers.SerializerMethodField()
    hint = serializers.CharField(help_text="The last characters of the secret, to recognise it.")

    @extend_schema_field(TokenPolicySerializer(many=True))
    def get_policies(self, token: ApiToken) -> list[dict[str, Any]]:
        return [
            {
                "id": token.id.hex,
                "effect": "allow",
                "permission_groups": [{"id": g.id, "name": g.name} for g in grants_to_groups(token.grants)],
                "resources": {f"{ACCOUNT_RESOURCE_PREFIX}{token.organisation_id.hex}": "*"},
            }
        ]

    @extend_schema_field(TokenConditionSerializer(allow_null=True))
    def get_condition(self, token: ApiToken) -> dict[str, Any] | None:
        return TokenConditionSerializer(token).data if token.allowed_networks else None

    def get_creator_email_at_creation(self, token: ApiToken) -> str | None:
        return token.created_by.email if token.created_by else None


class TokenCreatedSerializer(TokenSerializer):
    value = serializers.CharField(help_text="The secret. It is shown this once and never again.")


class TokenVerifySerializer(serializers.Serializer):
    id = serializers.CharField(source="id.hex")
    status = serializers.ChoiceField(choices=["active", "disabled", "expired"])
    expires_on = serializers.DateTimeField(source="expires_at", allow_null=True)
    not_before = serializers.DateTimeField(allow_null=True)


# --- input -----------------------------------------------------------------------------------------------------


class PolicyPermissionGroupInput(serializers.Serializer):
    id = serializers.CharField()

    def validate_id(self, value: str) -> str:
        if value not in PERMISSION_GROUPS:
            raise serializers.ValidationError(
                f"Unknown permission group “{value}”; see /accounts/{{account_id}}/tokens/permission_groups."
            )
        return value


class TokenPolicyInput(serializers.Serializer):
    effect = serializers.ChoiceField(choices=["allow", "deny"])
    permission_groups = PolicyPermissionGroupInput(many=True, allow_empty=False)
    resources = serializers.JSONField(
        required=False, help_text="Only this account: {com.cloudflare.api.account.<id>: *}"
    )

    def validate_effect(self, value: str) -> str:
        if value != "allow":
            raise serializers.ValidationError("Only `allow` policies are supported.")
        return value

    def validate_resources(self, value: Any) -> Any:
        if value in (None, {}):
            return value
        account_id = self.context["organisation"].account_id
        accepted = {f"{ACCOUNT_RESOURCE_PREFIX}{account_id}", f"{ACCOUNT_RESOURCE_PREFIX}*"}
        if not isinstance(value, dict) or not set(value) <= accepted:
            raise serializers.ValidationError(
                f"A token can only act in its own account: use {{“{ACCOUNT_RESOURCE_PREFIX}{account_id}”: “*”}}."
            )
        return value


class RequestIpInput(serializers.Serializer):
    def get_fields(self) -> dict[str, Any]:
        return {
            "in": serializers.ListField(child=serializers.CharField(), required=False),
            "not_in": serializers.ListField(child=serializers.CharField(), required=False),
        }

    def validate_not_in(self, value: list[str]) -> list[str]:
        if value:
            raise serializers.ValidationError("Excluded ranges are not supported: list the allowed ones in `in`.")
        return value


class TokenConditionInput(serializers.Serializer):
    request_ip = RequestIpInput(required=False)


class TokenWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    permissions = serializers.DictField(
        child=serializers.ChoiceField(choices=Level.values),
        required=False,
        help_text='Our simple grants: {"tunnels": "edit", "zones": "read"}. Give this or `policies`.',
    )
    policies = TokenPolicyInput(many=True, required=False, help_text="The SDK's form. Give this or `permissions`.")
    condition = TokenConditionInput(required=False, allow_null=True)
    expires_on = serializers.DateTimeField(required=False, allow_null=True)
    not_before = serializers.DateTimeField(required=False, allow_null=True)

    def validate_permissions(self, value: dict[str, str]) -> dict[str, str]:
        allowed = {resource.value for resource in TOKEN_RESOURCES}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise serializers.ValidationError(
                {key: f"Unknown resource group; use one of {', '.join(sorted(allowed))}." for key in unknown}
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "permissions" in attrs and "policies" in attrs:
            raise serializers.ValidationError({"policies": "Give either `permissions` or `policies`, not both."})
        if "policies" in attrs:
            attrs["grants"] = grants_from_policies(attrs.pop("policies"))
        elif "permissions" in attrs:
            attrs["grants"] = attrs.pop("permissions")
        elif not self.partial:
            raise serializers.ValidationError({"policies": "Grant at least one permission group."})
        condition = attrs.pop("condition", None) or {}
        if "request_ip" in condition or "condition" in self.initial_data:
            attrs["allowed_networks"] = (condition.get("request_ip") or {}).get("in", [])
        return attrs


def grants_from_policies(policies: list[dict[str, Any]]) -> dict[str, str]:
    """{resource: level} from allow policies; edit wins over read on the same resource."""
    grants: dict[str, str] = {}
    for policy in policies:
        for group in policy["permission_groups"]:
            permission = PERMISSION_GROUPS[group["id"]]
            if grants.get(permission.resource) != Level.EDIT:
                grants[permission.resource] = permission.level
    return grants


class TokenUpdateSerializer(TokenWriteSerializer):
    status = serializers.ChoiceField(
        choices=["active", "disabled", "expired"], required=False, help_text="`disabled` revokes the token."
    )


def same_moment(a: datetime.datetime | None, b: datetime.datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs((a - b).total_seconds()) < 1
