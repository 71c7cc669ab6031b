from __future__ import annotations

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
