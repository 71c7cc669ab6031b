from __future__ import annotations

from typing import Any

from rest_framework import serializers

from controlplane.api.serializers.common import QueryParams, direction_field
from controlplane.models import Organisation


class AccountSettingsSerializer(serializers.Serializer):
    enforce_twofactor = serializers.BooleanField(
        source="require_2fa", help_text="Members must sign in with a second factor."
    )


class AccountSerializer(serializers.Serializer):
    """An organisation, shaped as a v4 account."""

    id = serializers.CharField(source="account_id", read_only=True)
    name = serializers.CharField(source="display_name", max_length=100)
    type = serializers.SerializerMethodField()
    team_name = serializers.CharField(max_length=63, required=False)
    auth_domain = serializers.CharField(source="team_domain", read_only=True)
    created_on = serializers.DateTimeField(source="created_at", read_only=True)
    settings = AccountSettingsSerializer(source="*")

    def get_type(self, obj: Organisation) -> str:
        return "standard"


# One field instance for every account_data call: the same text as AccountSerializer's `created_on` (the
# current time zone, "Z" for UTC), without building a serializer's fields per call.
_CREATED_ON = serializers.DateTimeField()


def account_data(organisation: Organisation) -> dict[str, Any]:
    """What `AccountSerializer(organisation).data` says, as a plain dict: reading the account is the API's most
    frequent request (the SDK's first call), and building the serializer (a deep copy of its fields) was a third
    of its CPU (issue 13). tests/controlplane/api/test_account_data.py holds both to the same JSON."""
    return {
        "id": str(organisation.account_id),
        "name": str(organisation.display_name),
        "type": "standard",
        "team_name": str(organisation.team_name),
        "auth_domain": str(organisation.team_domain),
        "created_on": _CREATED_ON.to_representation(organisation.created_at),
        "settings": {"enforce_twofactor": bool(organisation.require_2fa)},
    }


class AccountUpdateSerializer(serializers.Serializer):
    """The SDK sends `id`, `name`, `type` (and `settings`); `id` and `type` are accepted and ignored."""

    id = serializers.CharField(required=False, help_text="Ignored (the URL names the account).")
    name = serializers.CharField(source="display_name", max_length=100, required=False)
    type = serializers.ChoiceField(choices=["standard", "enterprise"], required=False, help_text="Ignored.")
    team_name = serializers.CharField(
        max_length=63, required=False, help_text="Renames the team domain (Super Administrators only)."
    )
    settings = AccountSettingsSerializer(required=False)

    def validate(self, attrs: dict) -> dict:
        fields = {key: attrs[key] for key in ("display_name", "team_name") if key in attrs}
        if "require_2fa" in attrs.get("settings", {}):
            fields["require_2fa"] = attrs["settings"]["require_2fa"]
        return fields


class AccountListQuery(QueryParams):
    def params(self) -> dict:
        return {
            "name": serializers.CharField(required=False, help_text="Part of the account name."),
            "direction": direction_field("asc"),
        }
