"""Our roles as v4 account roles: id is the role's value, permissions one {read, write} per resource group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rest_framework import serializers

from controlplane.choices import ROLE_DESCRIPTIONS, ROLE_GRANTS, Level, Resource, Role
from controlplane.errors import NotFound


@dataclass(frozen=True)
class RoleInfo:
    id: str
    name: str
    description: str
    grants: dict[str, str]


def role_info(role: str) -> RoleInfo:
    if role not in Role.values:
        raise NotFound("No such role.")
    return RoleInfo(
        id=role, name=Role(role).label, description=str(ROLE_DESCRIPTIONS[Role(role)]), grants=ROLE_GRANTS[role]
    )


def all_roles() -> list[RoleInfo]:
    return [role_info(role) for role in Role.values]


class PermissionGrantSerializer(serializers.Serializer):
    read = serializers.BooleanField()
    write = serializers.BooleanField()


class RolePermissionsSerializer(serializers.Serializer):
    """One {read, write} per resource group (`tunnels`, `access`, … `tokens`)."""

    def get_fields(self) -> dict[str, Any]:
        return {resource.value: PermissionGrantSerializer() for resource in Resource}

    def to_representation(self, grants: dict[str, str]) -> dict[str, Any]:
        return {
            resource.value: {
                "read": resource.value in grants,
                "write": grants.get(resource.value) == Level.EDIT,
            }
            for resource in Resource
        }


class RoleSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The role's identifier, e.g. `tunnel_admin`.")
    name = serializers.CharField()
    description = serializers.CharField()
    permissions = RolePermissionsSerializer(source="grants")
