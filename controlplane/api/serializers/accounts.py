from __future__ import annotations

from rest_framework import serializers

from controlplane.models import Organisation


class AccountSerializer(serializers.Serializer):
    """An organisation, shaped as a v4 account."""

    id = serializers.CharField(source="account_id", read_only=True)
    name = serializers.CharField(source="display_name", max_length=100)
    type = serializers.SerializerMethodField()
    team_name = serializers.CharField(max_length=63, required=False)
    auth_domain = serializers.CharField(source="team_domain", read_only=True)
    created_on = serializers.DateTimeField(source="created_at", read_only=True)
    settings = serializers.SerializerMethodField()

    def get_type(self, obj: Organisation) -> str:
        return "standard"

    def get_settings(self, obj: Organisation) -> dict:
        return {"enforce_twofactor": obj.require_2fa}
