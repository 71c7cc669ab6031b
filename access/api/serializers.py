"""Access resources in Cloudflare's v4 shapes. Input serializers describe the bodies for the schema and check
their outline; the services validate every value and name the bad entry."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from access.models import AccessGroup, AccessList, Application, IdentityProvider, Policy, ServiceToken
from controlplane.api.serializers.common import StrictCharField


def _rules(**kwargs: Any) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.DictField(),
        help_text='Rules in Cloudflare\'s shape, e.g. [{"email": {"email": "ana@example.com"}}].',
        **kwargs,
    )


class PolicyInput(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    decision = serializers.ChoiceField(choices=Policy.Decision.values)
    include = _rules()
    require = _rules(required=False)
    exclude = _rules(required=False)
    session_duration = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=32)
    precedence = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1)


class PolicyOutput(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    decision = serializers.CharField()
    include = _rules()
    require = _rules()
    exclude = _rules()
    session_duration = serializers.CharField(allow_null=True)
    precedence = serializers.IntegerField(required=False)
    reusable = serializers.BooleanField()
    app_count = serializers.IntegerField(required=False)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def policy_data(policy: Policy, precedence: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(policy.pk),
        "name": policy.name,
        "decision": policy.decision,
        "include": policy.include,
        "require": policy.require,
        "exclude": policy.exclude,
        "session_duration": policy.session_duration or None,
        "reusable": policy.reusable,
        "created_at": policy.created_at,
        "updated_at": policy.updated_at,
    }
    if precedence is not None:
        data["precedence"] = precedence
    if hasattr(policy, "app_count"):
        data["app_count"] = policy.app_count
    return data


class DestinationSerializer(serializers.Serializer):
    type = serializers.CharField(default="public")
    uri = serializers.CharField(max_length=512, required=False)


class ApplicationInput(serializers.Serializer):
    name = serializers.CharField(max_length=255, required=False)
    type = serializers.CharField(default="self_hosted")
    domain = serializers.CharField(required=False, max_length=512)
    destinations = DestinationSerializer(many=True, required=False)
    self_hosted_domains = serializers.ListField(child=serializers.CharField(max_length=512), required=False)
    session_duration = serializers.CharField(required=False, max_length=32)
    allowed_idps = serializers.ListField(child=serializers.CharField(), required=False)
    auto_redirect_to_identity = serializers.BooleanField(required=False)
    app_launcher_visible = serializers.BooleanField(required=False)
    custom_deny_message = serializers.CharField(required=False, allow_blank=True, max_length=1024)
    custom_deny_url = serializers.CharField(required=False, allow_blank=True, max_length=1024)
    logo_url = serializers.CharField(required=False, allow_blank=True, max_length=1024)
    same_site_cookie_attribute = serializers.ChoiceField(choices=["none", "lax", "strict"], required=False)
    http_only_cookie_attribute = serializers.BooleanField(required=False)
    policies = serializers.ListField(
        child=serializers.JSONField(),
        required=False,
        help_text='Reusable policy ids, or {"id": …, "precedence": …} objects.',
    )


class ApplicationOutput(serializers.Serializer):
    id = serializers.CharField()
    uid = serializers.CharField()
    aud = serializers.CharField()
    name = serializers.CharField()
    type = serializers.CharField()
    domain = serializers.CharField()
    destinations = DestinationSerializer(many=True)
    self_hosted_domains = serializers.ListField(child=serializers.CharField())
    session_duration = serializers.CharField()
    allowed_idps = serializers.ListField(child=serializers.CharField())
    auto_redirect_to_identity = serializers.BooleanField()
    app_launcher_visible = serializers.BooleanField()
    custom_deny_message = serializers.CharField()
    custom_deny_url = serializers.CharField()
    logo_url = serializers.CharField()
    same_site_cookie_attribute = serializers.CharField()
    http_only_cookie_attribute = serializers.BooleanField()
    policies = PolicyOutput(many=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def application_data(app: Application) -> dict[str, Any]:
    links = list(app.policy_links.all())
    return {
        "id": str(app.pk),
        "uid": str(app.pk),
        "aud": app.aud,
        "name": app.name,
        "type": app.type,
        "domain": app.domain,
        "destinations": app.destinations,
        "self_hosted_domains": [item["uri"] for item in app.destinations],
        "session_duration": app.session_duration,
        "allowed_idps": app.allowed_idps,
        "auto_redirect_to_identity": app.auto_redirect_to_identity,
        "app_launcher_visible": app.app_launcher_visible,
        "custom_deny_message": app.custom_deny_message,
        "custom_deny_url": app.custom_deny_url,
        "logo_url": app.logo_url,
        "same_site_cookie_attribute": app.same_site_cookie_attribute,
        "http_only_cookie_attribute": app.http_only_cookie_attribute,
        "policies": [policy_data(link.policy, link.precedence) for link in links],
        "created_at": app.created_at,
        "updated_at": app.updated_at,
    }


class GroupInput(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    include = _rules()
    require = _rules(required=False)
    exclude = _rules(required=False)
    is_default = serializers.BooleanField(required=False)


class GroupOutput(GroupInput):
    id = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def group_data(group: AccessGroup) -> dict[str, Any]:
    return {
        "id": str(group.pk),
        "name": group.name,
        "include": group.include,
        "require": group.require,
        "exclude": group.exclude,
        "is_default": group.is_default,
        "created_at": group.created_at,
        "updated_at": group.updated_at,
    }


class ServiceTokenInput(serializers.Serializer):
    name = serializers.CharField(max_length=255, required=False)
    duration = serializers.CharField(
        required=False, allow_blank=True, max_length=32, help_text='A Go duration, or "forever" (empty: 8760h).'
    )


class ServiceTokenOutput(serializers.Serializer):
    id = serializers.CharField()
    client_id = serializers.CharField()
    name = serializers.CharField()
    duration = serializers.CharField()
    expires_at = serializers.DateTimeField(allow_null=True)
    last_seen_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ServiceTokenSecretOutput(ServiceTokenOutput):
    client_secret = serializers.CharField(help_text="Shown once.")


def service_token_data(token: ServiceToken, secret: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(token.pk),
        "client_id": token.client_id,
        "name": token.name,
        "duration": token.duration,
        "expires_at": token.expires_at,
        "last_seen_at": token.last_seen_at,
        "created_at": token.created_at,
        "updated_at": token.updated_at,
    }
    if secret is not None:
        data["client_secret"] = secret
    return data


class IdentityProviderInput(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    type = serializers.ChoiceField(choices=IdentityProvider.Type.values)
    config = serializers.DictField(required=False)


class IdentityProviderOutput(IdentityProviderInput):
    id = serializers.CharField()


def identity_provider_data(idp: IdentityProvider) -> dict[str, Any]:
    return {"id": str(idp.pk), "name": idp.name, "type": idp.type, "config": idp.config}


class ListItem(serializers.Serializer):
    value = serializers.CharField(max_length=320)


class ListInput(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    type = serializers.ChoiceField(choices=AccessList.Type.values)
    description = StrictCharField(required=False, allow_blank=True, max_length=500)
    items = ListItem(many=True, required=False, allow_null=True)


class ListOutput(ListInput):
    id = serializers.CharField()
    count = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def list_data(access_list: AccessList) -> dict[str, Any]:
    return {
        "id": str(access_list.pk),
        "name": access_list.name,
        "type": access_list.type,
        "description": access_list.description,
        "count": len(access_list.items),
        "items": [{"value": item} for item in access_list.items],
        "created_at": access_list.created_at,
        "updated_at": access_list.updated_at,
    }


class LoginDesign(serializers.Serializer):
    background_color = serializers.CharField(required=False, allow_blank=True)
    text_color = serializers.CharField(required=False, allow_blank=True)
    logo_path = serializers.CharField(required=False, allow_blank=True)
    header_text = serializers.CharField(required=False, allow_blank=True)
    footer_text = serializers.CharField(required=False, allow_blank=True)


class AccessOrganizationInput(serializers.Serializer):
    name = serializers.CharField(required=False)
    auth_domain = serializers.CharField(required=False)
    session_duration = serializers.CharField(required=False, help_text="The global session: 15m to 730h.")
    auto_redirect_to_identity = serializers.BooleanField(required=False)
    login_design = LoginDesign(required=False)


class AccessOrganizationOutput(AccessOrganizationInput):
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def access_organization_data(organisation: Any, row: Any) -> dict[str, Any]:
    return {
        "name": organisation.display_name or organisation.team_name,
        "auth_domain": organisation.team_domain,
        "session_duration": row.session_duration,
        "auto_redirect_to_identity": row.auto_redirect_to_identity,
        "login_design": row.login_design,
        "created_at": organisation.created_at,
        "updated_at": row.updated_at,
    }


class RevokeUserInput(serializers.Serializer):
    email = serializers.EmailField()


class KeysInput(serializers.Serializer):
    key_rotation_interval_days = serializers.IntegerField(min_value=21, max_value=365)


class KeysOutput(KeysInput):
    last_key_rotation_at = serializers.DateTimeField(allow_null=True)
    days_until_next_rotation = serializers.IntegerField()


class AccessLogQuery(serializers.Serializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    email = serializers.CharField(
        required=False, max_length=320, help_text="A part of the email (any case); the whole of it with email_exact."
    )
    email_exact = serializers.BooleanField(required=False, default=False)
    app_uid = serializers.CharField(required=False, max_length=64)
    allowed = serializers.BooleanField(required=False, allow_null=True, default=None)
    direction = serializers.ChoiceField(choices=["asc", "desc"], required=False, default="desc")
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=10_000, help_text="At most this many entries (then paged)."
    )


class AccessRequestOutput(serializers.Serializer):
    user_email = serializers.CharField()
    ip_address = serializers.CharField()
    app_uid = serializers.CharField()
    app_domain = serializers.CharField()
    action = serializers.CharField()
    connection = serializers.CharField()
    allowed = serializers.BooleanField()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()
    ray_id = serializers.CharField()
    country = serializers.CharField()


def access_request_data(row: Any) -> dict[str, Any]:
    return {
        "user_email": row.user_email,
        "ip_address": row.ip_address,
        "app_uid": row.app_uid,
        "app_domain": row.app_domain,
        "action": row.action,
        "connection": row.connection,
        "allowed": row.allowed,
        "reason": row.reason,
        "created_at": row.created_at,
        "ray_id": row.ray_id,
        "country": row.country,
    }


class PolicyTestInput(serializers.Serializer):
    email = serializers.CharField(required=False, allow_blank=True)
    ip = serializers.CharField(required=False, allow_blank=True)
    country = serializers.RegexField(r"^[A-Za-z]{2}$", required=False, allow_blank=True, max_length=2)
    url = serializers.CharField(required=False, allow_blank=True, help_text="Test only the application covering it.")
    service_token_id = serializers.CharField(required=False, allow_blank=True)


class PolicyTestOutput(serializers.Serializer):
    app_id = serializers.CharField()
    app_name = serializers.CharField()
    outcome = serializers.CharField()
    admitted = serializers.BooleanField()
    explanation = serializers.CharField()
    policy = serializers.DictField(allow_null=True)
    rule = serializers.DictField(allow_null=True)
    trace = serializers.ListField(child=serializers.DictField())
