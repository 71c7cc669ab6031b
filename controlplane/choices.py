"""Enumerations of the core app, and what each role may do."""

from __future__ import annotations

from django.db import models


class Resource(models.TextChoices):
    """Resource groups that roles and API tokens grant read or edit on."""

    TUNNELS = "tunnels", "Tunnels"
    ACCESS = "access", "Access"
    CERTIFICATES = "certificates", "Origin certificates"
    ZONES = "zones", "Zones and DNS"
    MEMBERS = "members", "Members"
    AUDIT = "audit", "Audit log"
    SETTINGS = "settings", "Organisation settings"
    TOKENS = "tokens", "API tokens"


# Resources whose section is still a placeholder page: wherever they appear (navigation, permission matrix, role
# descriptions) the UI says "not available yet". Remove a resource from here when its pages land.
NOT_AVAILABLE_YET: frozenset[str] = frozenset({Resource.ACCESS})


class Level(models.TextChoices):
    READ = "read", "Read"
    EDIT = "edit", "Edit"


def scope(resource: str, level: str) -> str:
    return f"{resource}:{level}"


def scopes_for(grants: dict[str, str]) -> frozenset[str]:
    """Expand {resource: level} into scope strings; edit implies read."""
    result: set[str] = set()
    for resource, level in grants.items():
        result.add(scope(resource, Level.READ))
        if level == Level.EDIT:
            result.add(scope(resource, Level.EDIT))
    return frozenset(result)


ALL_READ = {resource.value: Level.READ.value for resource in Resource}
ALL_EDIT = {resource.value: Level.EDIT.value for resource in Resource}

# API tokens can be granted these groups (tokens never manage other tokens, nor organisation settings).
TOKEN_RESOURCES = [
    Resource.TUNNELS,
    Resource.ACCESS,
    Resource.CERTIFICATES,
    Resource.ZONES,
    Resource.MEMBERS,
    Resource.AUDIT,
]


class Role(models.TextChoices):
    SUPER_ADMIN = "super_admin", "Super Administrator"
    ADMIN = "admin", "Administrator"
    TUNNEL_ADMIN = "tunnel_admin", "Tunnel Administrator"
    ACCESS_ADMIN = "access_admin", "Access Administrator"
    READ_ONLY = "read_only", "Read only"


ROLE_DESCRIPTIONS = {
    Role.SUPER_ADMIN: "Everything, including assigning the Super Administrator role and renaming the team.",
    Role.ADMIN: "Everything except managing Super Administrators.",
    Role.TUNNEL_ADMIN: "Edit tunnels, public hostnames, zones and DNS; read everything else.",
    Role.ACCESS_ADMIN: "Edit Access applications, policies and certificates; read everything else.",
    Role.READ_ONLY: "See everything, change nothing.",
}

ROLE_GRANTS: dict[str, dict[str, str]] = {
    Role.SUPER_ADMIN: ALL_EDIT,
    Role.ADMIN: ALL_EDIT,
    Role.TUNNEL_ADMIN: {**ALL_READ, "tunnels": "edit", "zones": "edit"},
    Role.ACCESS_ADMIN: {**ALL_READ, "access": "edit", "certificates": "edit"},
    Role.READ_ONLY: ALL_READ,
}

ROLE_SCOPES: dict[str, frozenset[str]] = {role: scopes_for(grants) for role, grants in ROLE_GRANTS.items()}


def role_description(role: str) -> str:
    """What a role may do, saying which of the sections it is for are not available yet (a role made for them)."""
    grants = ROLE_GRANTS.get(role, {})
    edits = {resource for resource, level in grants.items() if level == "edit"}
    pending = [Resource(resource).label for resource in Resource if resource in edits & NOT_AVAILABLE_YET]
    text = ROLE_DESCRIPTIONS.get(role, "")  # type: ignore[call-overload]
    if pending and edits <= NOT_AVAILABLE_YET:
        text += f" ({' and '.join(pending)}: not available yet.)"
    return text


class ZoneStatus(models.TextChoices):
    PENDING = "pending", "Pending verification"
    ACTIVE = "active", "Active"


class InvitationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    DECLINED = "declined", "Declined"
    REVOKED = "revoked", "Revoked"


class AuditAction(models.TextChoices):
    CREATE = "create", "Create"
    UPDATE = "update", "Update"
    DELETE = "delete", "Delete"
    LOGIN = "login", "Sign in"
    ROTATE = "rotate", "Rotate"
    REGISTER = "register", "Registered"
    UNREGISTER = "unregister", "Unregistered"


class Interface(models.TextChoices):
    UI = "ui", "Web UI"
    API = "api", "API"
    CLI = "cli", "Command line"
    SYSTEM = "system", "System"
    CONNECTOR = "connector", "Connector"
