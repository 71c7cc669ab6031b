"""Members (accepted memberships and pending invitations), shaped like the SDK's `Member`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from controlplane.api.serializers.common import QueryParams, direction_field, documented
from controlplane.api.serializers.roles import RoleSerializer, role_info
from controlplane.choices import Role
from controlplane.selectors import MEMBER_ORDERS, MemberEntry


class MemberUserSerializer(serializers.Serializer):
    id = serializers.CharField(allow_null=True, help_text="Null while the invitation is pending.")
    email = serializers.EmailField()
    first_name = serializers.CharField(allow_null=True)
    last_name = serializers.CharField(allow_null=True)
    two_factor_authentication_enabled = serializers.BooleanField()

    def to_representation(self, entry: MemberEntry) -> dict[str, Any]:
        user = entry.user
        first, _, last = (user.name if user else "").strip().partition(" ")
        return {
            "id": str(user.pk) if user else None,
            "email": entry.email,
            "first_name": first or None,
            "last_name": last.strip() or None,
            "two_factor_authentication_enabled": entry.two_factor_enabled,
        }


class MemberSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="A membership's integer id, or a pending invitation's 32-hex id.")
    email = serializers.EmailField()
    status = serializers.ChoiceField(choices=["accepted", "pending"])
    user = MemberUserSerializer(source="*")
    roles = serializers.SerializerMethodField(help_text="The member's role (always exactly one).")

    @extend_schema_field(RoleSerializer(many=True))
    def get_roles(self, entry: MemberEntry) -> list[dict[str, Any]]:
        return RoleSerializer([role_info(entry.role)], many=True).data


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "description": "A role id."},
            {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
        ]
    }
)
class RoleReferenceField(serializers.Field):
    """A role given as its id (`"admin"`) or as an object with an id (`{"id": "admin"}`), as the SDK sends it."""

    default_error_messages = {
        "invalid": "Give a role id, or an object with an `id`.",
        "unknown": "Unknown role “{role}”; choose one of: {choices}.",
    }

    def to_internal_value(self, data: Any) -> str:
        role = data.get("id") if isinstance(data, dict) else data
        if not isinstance(role, str):
            self.fail("invalid")
        if role not in Role.values:
            self.fail("unknown", role=role, choices=", ".join(Role.values))
        return role

    def to_representation(self, value: Any) -> Any:
        return value


ROLES_HELP = "Exactly one role id (see /accounts/{account_id}/roles), as a string or {id}."
POLICIES_REFUSED = "Member policies are not supported: give `roles` (one role id)."


def _one_role(roles: list[str]) -> str:
    if len(roles) != 1:
        raise serializers.ValidationError({"roles": "A member has exactly one role: give one role id."})
    return roles[0]


# `policies` is read only to refuse it with a clear message: the schema does not offer it.
@extend_schema_serializer(exclude_fields=["policies"])
class MemberCreateSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    roles = serializers.ListField(child=RoleReferenceField(), help_text=ROLES_HELP)
    status = documented(
        serializers.ChoiceField(
            choices=["pending", "accepted"],
            required=False,
            help_text="Only `pending`: people join by accepting the invitation emailed to them.",
        ),
        {"type": "string", "enum": ["pending"]},
    )
    policies = serializers.ListField(child=serializers.DictField(), required=False, help_text=POLICIES_REFUSED)

    def validate_status(self, value: str) -> str:
        if value != "pending":
            raise serializers.ValidationError(
                "Members cannot be added as accepted: they join by accepting the invitation emailed to them."
            )
        return value

    def validate_policies(self, value: Any) -> Any:
        raise serializers.ValidationError(POLICIES_REFUSED)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["role"] = _one_role(attrs["roles"])
        return attrs


@extend_schema_serializer(exclude_fields=["policies"])
class MemberUpdateSerializer(serializers.Serializer):
    roles = serializers.ListField(child=RoleReferenceField(), help_text=ROLES_HELP)
    policies = serializers.ListField(child=serializers.DictField(), required=False, help_text=POLICIES_REFUSED)

    def validate_policies(self, value: Any) -> Any:
        raise serializers.ValidationError(POLICIES_REFUSED)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["role"] = _one_role(attrs["roles"])
        return attrs


class MemberListQuery(QueryParams):
    def params(self) -> dict[str, Any]:
        return {
            "status": serializers.ChoiceField(
                choices=["accepted", "pending", "rejected"],
                required=False,
                help_text="`rejected` lists declined invitations.",
            ),
            "order": serializers.ChoiceField(choices=list(MEMBER_ORDERS), required=False, default="user.email"),
            "direction": direction_field("asc"),
        }
